//! `dns_check`'s wire format (pure): one query (RFC 1035 §4.1, recursion desired,
//! class IN), and the judgement of the reply, as keepalived's DNS_CHECK: the reply must
//! carry the query's id, be a response with RCODE 0 and hold at least one answer.

/// The query for `name` (`.` or empty: the root) of type `qtype`, with `id`. The
/// name's labels are 1..=63 bytes (validation: `config::validate::dns_name_ok`).
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    // Flags: RD. One question, no answer, authority or additional records.
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// Judges `reply` to the query with `id`; the error says why it fails.
pub fn judge(id: u16, reply: &[u8]) -> Result<(), String> {
    if reply.len() < 12 {
        return Err(format!(
            "DNS reply of {} bytes, shorter than a header",
            reply.len()
        ));
    }
    let got = u16::from_be_bytes([reply[0], reply[1]]);
    if got != id {
        return Err(format!("DNS reply id {got}, query id {id}"));
    }
    if reply[2] & 0x80 == 0 {
        return Err("DNS reply is not a response (QR 0)".to_owned());
    }
    let rcode = reply[3] & 0x0f;
    if rcode != 0 {
        let name = match rcode {
            1 => " (FORMERR)",
            2 => " (SERVFAIL)",
            3 => " (NXDOMAIN)",
            4 => " (NOTIMP)",
            5 => " (REFUSED)",
            _ => "",
        };
        return Err(format!("DNS rcode {rcode}{name}"));
    }
    if u16::from_be_bytes([reply[6], reply[7]]) == 0 {
        return Err("DNS reply has no answer".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recursive query (RD) for www.example.com A with id 0x1a2b, as RFC 1035 §4.1
    /// lays it out: header, QNAME, QTYPE 1, QCLASS 1.
    const QUERY: [u8; 33] = [
        0x1a, 0x2b, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, b'w', b'w',
        b'w', 0x07, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0x03, b'c', b'o', b'm', 0x00, 0x00,
        0x01, 0x00, 0x01,
    ];

    #[test]
    fn the_query_is_rfc_1035s() {
        assert_eq!(query(0x1a2b, "www.example.com", 1), QUERY);
        assert_eq!(query(0x1a2b, "www.example.com.", 1), QUERY);
        // The root, type SOA (keepalived's default).
        assert_eq!(
            query(7, ".", 6),
            [0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 1]
        );
    }

    #[test]
    fn replies_need_the_id_a_response_rcode_0_and_an_answer() {
        let mut reply = QUERY.to_vec();
        reply[2] = 0x81; // QR, RD
        reply[3] = 0x80; // RA, RCODE 0
        reply[7] = 1; // one answer (its record need not be read)
        assert_eq!(judge(0x1a2b, &reply), Ok(()));
        assert_eq!(
            judge(0x1a2c, &reply),
            Err("DNS reply id 6699, query id 6700".into())
        );
        let mut none = reply.clone();
        none[7] = 0;
        assert_eq!(judge(0x1a2b, &none), Err("DNS reply has no answer".into()));
        let mut nx = reply.clone();
        nx[3] = 0x83;
        assert_eq!(judge(0x1a2b, &nx), Err("DNS rcode 3 (NXDOMAIN)".into()));
        assert_eq!(
            judge(0x1a2b, &QUERY),
            Err("DNS reply is not a response (QR 0)".into())
        );
        assert!(judge(0x1a2b, &reply[..5]).is_err());
    }
}
