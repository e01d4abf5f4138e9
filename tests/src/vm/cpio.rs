//! A writer for the cpio "newc" format the kernel unpacks as an initramfs.
use std::collections::BTreeSet;

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// An archive being built. Parent directories are added on demand; paths are
/// relative to the root (a leading `/` is dropped). Adding a path twice is a
/// mistake and panics (it would unpack as whichever came last).
#[derive(Debug, Default)]
pub struct Newc {
    out: Vec<u8>,
    next_ino: u32,
    paths: BTreeSet<String>,
}

impl Newc {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn contains(&self, path: &str) -> bool {
        self.paths.contains(path.trim_start_matches('/'))
    }

    pub fn dir(&mut self, path: &str) {
        let path = path.trim_start_matches('/').trim_end_matches('/');
        if path.is_empty() || self.paths.contains(path) {
            return;
        }
        self.entry(path, S_IFDIR | 0o755, (0, 0), b"");
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.entry(path, S_IFREG | (mode & 0o7777), (0, 0), data);
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, S_IFLNK | 0o777, (0, 0), target.as_bytes());
    }

    pub fn char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        self.entry(path, S_IFCHR | (mode & 0o7777), (major, minor), b"");
    }

    /// The archive with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.header("TRAILER!!!", 0, 0, (0, 0), 0);
        self.out
    }

    fn entry(&mut self, path: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        let path = path.trim_start_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        assert!(
            self.paths.insert(path.to_string()),
            "initramfs: {path} added twice"
        );
        self.next_ino += 1;
        self.header(path, self.next_ino, mode, rdev, data.len());
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn header(&mut self, name: &str, ino: u32, mode: u32, rdev: (u32, u32), size: usize) {
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            0,
            size as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// (name, mode, rdev, data) of an entry.
    type Entry = (String, u32, (u32, u32), Vec<u8>);

    /// Each entry, read back per the newc layout.
    fn entries(mut a: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        let start = a.len();
        loop {
            assert_eq!(&a[..6], b"070701");
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&a[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                    .unwrap()
            };
            let (mode, size, rdev, namesize) = (
                field(1),
                field(6) as usize,
                (field(9), field(10)),
                field(11) as usize,
            );
            let name = std::str::from_utf8(&a[110..110 + namesize - 1])
                .unwrap()
                .to_string();
            assert_eq!(a[110 + namesize - 1], 0);
            let data_at = (110 + namesize).next_multiple_of(4);
            let data = a[data_at..data_at + size].to_vec();
            let next = (data_at + size).next_multiple_of(4);
            assert_eq!((start - a.len() + next) % 4, 0);
            a = &a[next..];
            if name == "TRAILER!!!" {
                assert!(a.is_empty());
                return out;
            }
            out.push((name, mode, rdev, data));
        }
    }

    #[test]
    fn writes_parents_files_links_and_devices() {
        let mut n = Newc::new();
        n.file("/bin/busybox", 0o755, b"ELF");
        n.symlink("bin/sh", "busybox");
        n.char_device("/dev/console", 0o600, 5, 1);
        n.dir("/bin");
        assert!(n.contains("/bin/sh"));
        let e = entries(&n.finish());
        let names: Vec<&str> = e.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(
            names,
            ["bin", "bin/busybox", "bin/sh", "dev", "dev/console"]
        );
        assert_eq!(e[1].1, S_IFREG | 0o755);
        assert_eq!(e[1].3, b"ELF");
        assert_eq!(
            (e[2].1, e[2].3.as_slice()),
            (S_IFLNK | 0o777, b"busybox".as_slice())
        );
        assert_eq!((e[4].1, e[4].2), (S_IFCHR | 0o600, (5, 1)));
    }

    proptest! {
        #[test]
        fn any_files_read_back(files in proptest::collection::btree_map("[a-z]{1,6}(/[a-z]{1,6}){0,2}", proptest::collection::vec(any::<u8>(), 0..50), 1..6)) {
            // A path that is also another's parent directory cannot be a file.
            let files: Vec<_> = files.iter().filter(|(p, _)| !files.keys().any(|q| q.starts_with(&format!("{p}/")))).collect();
            let mut n = Newc::new();
            for (p, d) in &files {
                n.file(p, 0o644, d);
            }
            let back = entries(&n.finish());
            for (p, d) in files {
                let e = back.iter().find(|e| &e.0 == p).unwrap();
                prop_assert_eq!(&e.3, d);
            }
        }
    }
}
