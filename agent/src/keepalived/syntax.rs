//! keepalived.conf syntax (keepalived.conf(5), keepalived 2.2): words separated by
//! whitespace, `{` and `}` delimiting blocks, comments from `#` or `!` to the end of
//! the line, quoted strings (`"` or `'`, shell escapes), `include` (and its variants
//! includer/m/w/b/a) of files and wildcards relative to the including file, lines
//! kept or dropped by `@ID` / `@^ID` conditionals, and `$NAME=VALUE` parameters
//! substituted as `$NAME` or `${NAME}`. The result is a tree of statements, each with
//! the file and line it came from. Pure but for reading the files, through a
//! caller-given function so that tests and the fuzzer read from memory.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a statement came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: Arc<PathBuf>,
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One statement: its words (the keyword first) and, when a `{` followed them, the
/// statements of its block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stmt {
    pub words: Vec<String>,
    pub block: Option<Vec<Stmt>>,
    pub at: Location,
}

impl Stmt {
    pub fn keyword(&self) -> &str {
        &self.words[0]
    }

    pub fn args(&self) -> &[String] {
        &self.words[1..]
    }
}

/// Malformed input: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub at: Location,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

impl std::error::Error for SyntaxError {}

/// How files are found and read: `read(path)` gives a file's text, `matches(pattern)`
/// the files a wildcard pattern names (sorted, as glob(3) returns them).
pub trait Files {
    fn read(&mut self, path: &Path) -> std::io::Result<String>;
    fn matches(&mut self, pattern: &Path) -> std::io::Result<Vec<PathBuf>>;
}

/// The real file system.
pub struct Disk;

impl Files for Disk {
    fn read(&mut self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn matches(&mut self, pattern: &Path) -> std::io::Result<Vec<PathBuf>> {
        let dir = pattern.parent().unwrap_or(Path::new("."));
        if has_wildcard(&dir.to_string_lossy()) {
            return Err(std::io::Error::other(
                "wildcards are supported in the file name only, not in directories",
            ));
        }
        let name = pattern
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let file = entry.file_name().to_string_lossy().into_owned();
            // glob(3) leaves out dot files unless the pattern starts with a dot.
            if (!file.starts_with('.') || name.starts_with('.')) && wildcard_match(&name, &file) {
                found.push(dir.join(file));
            }
        }
        found.sort();
        Ok(found)
    }
}

/// Includes nested deeper than this are a loop (keepalived's own limit is lower).
const MAX_INCLUDE_DEPTH: usize = 32;

/// Parameter substitution deeper than this is a loop (`$A=$B`, `$B=$A`).
const MAX_SUBSTITUTION_DEPTH: usize = 16;

/// Reads `path` and everything it includes into statements, keeping the lines whose
/// `@` conditional matches `config_id` (keepalived's `-i`; lines without one always).
pub fn read(files: &mut dyn Files, path: &Path, config_id: &str) -> Result<Vec<Stmt>, SyntaxError> {
    let mut reader = Reader {
        files,
        config_id,
        params: BTreeMap::new(),
        lines: Vec::new(),
    };
    let top = Location {
        file: Arc::new(path.to_owned()),
        line: 0,
    };
    reader.file(path, &top, 0)?;
    build(reader.lines, &top)
}

/// One line's words, `{` and `}` as words of their own.
struct Line {
    words: Vec<Word>,
    at: Location,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Word {
    Open,
    Close,
    Text(String),
}

struct Reader<'a> {
    files: &'a mut dyn Files,
    config_id: &'a str,
    params: BTreeMap<String, String>,
    lines: Vec<Line>,
}

impl Reader<'_> {
    fn file(&mut self, path: &Path, from: &Location, depth: usize) -> Result<(), SyntaxError> {
        if depth > MAX_INCLUDE_DEPTH {
            return Err(SyntaxError {
                at: from.clone(),
                message: format!("includes nest deeper than {MAX_INCLUDE_DEPTH}: a loop?"),
            });
        }
        let text = self.files.read(path).map_err(|e| SyntaxError {
            at: from.clone(),
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        let file = Arc::new(path.to_owned());
        for (i, raw) in text.lines().enumerate() {
            let at = Location {
                file: Arc::clone(&file),
                line: i + 1,
            };
            let Some(raw) = self.conditional(raw) else {
                continue;
            };
            if let Some((name, value)) = definition(raw) {
                self.params.insert(name.to_owned(), value.to_owned());
                continue;
            }
            let text = self.substitute(raw, &at, 0)?;
            let words = words(&text).map_err(|message| SyntaxError {
                at: at.clone(),
                message,
            })?;
            if let Some(Word::Text(first)) = words.first() {
                if is_include(first) {
                    self.include(&words[1..], path, &at, depth)?;
                    continue;
                }
            }
            if !words.is_empty() {
                self.lines.push(Line { words, at });
            }
        }
        Ok(())
    }

    /// The line without its `@ID ` prefix when it applies here; `None` when it does not.
    fn conditional<'l>(&self, line: &'l str) -> Option<&'l str> {
        let trimmed = line.trim_start();
        let Some(rest) = trimmed.strip_prefix('@') else {
            return Some(line);
        };
        let (negated, rest) = match rest.strip_prefix('^') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (id, rest) = rest.split_at(end);
        ((id == self.config_id) != negated).then_some(rest)
    }

    fn include(
        &mut self,
        args: &[Word],
        current: &Path,
        at: &Location,
        depth: usize,
    ) -> Result<(), SyntaxError> {
        let [Word::Text(name)] = args else {
            return Err(SyntaxError {
                at: at.clone(),
                message: "include takes one file name or pattern".into(),
            });
        };
        // Relative to the including file's directory (keepalived changes into it).
        let base = current.parent().unwrap_or(Path::new(""));
        let pattern = base.join(name);
        let paths = if has_wildcard(name) {
            self.files.matches(&pattern).map_err(|e| SyntaxError {
                at: at.clone(),
                message: format!("include {name}: {e}"),
            })?
        } else {
            vec![pattern]
        };
        for path in paths {
            self.file(&path, at, depth + 1)?;
        }
        Ok(())
    }

    /// `$NAME` (followed by whitespace or the end) and `${NAME}` replaced by their
    /// values, recursively.
    fn substitute(&self, line: &str, at: &Location, depth: usize) -> Result<String, SyntaxError> {
        if !line.contains('$') {
            return Ok(line.to_owned());
        }
        if depth > MAX_SUBSTITUTION_DEPTH {
            return Err(SyntaxError {
                at: at.clone(),
                message: format!(
                    "parameters substitute into each other deeper than {MAX_SUBSTITUTION_DEPTH}"
                ),
            });
        }
        let mut out = String::with_capacity(line.len());
        let mut rest = line;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
                match braced.split_once('}') {
                    Some((name, tail)) => (name, tail),
                    None => {
                        return Err(SyntaxError {
                            at: at.clone(),
                            message: "`${` without its closing `}`".into(),
                        })
                    }
                }
            } else {
                let end = after.find(char::is_whitespace).unwrap_or(after.len());
                after.split_at(end)
            };
            // A `$` that starts no defined parameter (a password, say) stays as
            // written, as keepalived leaves it.
            let Some(value) = self.params.get(name).filter(|_| is_param_name(name)) else {
                out.push('$');
                rest = after;
                continue;
            };
            out.push_str(value);
            rest = tail;
        }
        out.push_str(rest);
        if out.contains('$') && out != line {
            return self.substitute(&out, at, depth + 1);
        }
        Ok(out)
    }
}

fn is_include(word: &str) -> bool {
    matches!(
        word,
        "include" | "includer" | "includem" | "includew" | "includeb" | "includea"
    )
}

fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `$NAME=VALUE` with only whitespace before the `$`.
fn definition(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.trim_start().strip_prefix('$')?.split_once('=')?;
    is_param_name(name).then_some((name, value.trim_end()))
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// glob(3)-style `*`, `?` and `[...]` (with `!` or `^` negation and ranges) over one
/// file name.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    fn class(set: &[char], c: char) -> Option<(bool, usize)> {
        // Returns (matched, chars consumed including the closing bracket).
        let (negate, start) = match set.first() {
            Some('!') | Some('^') => (true, 1),
            _ => (false, 0),
        };
        let mut i = start;
        let mut hit = false;
        while i < set.len() {
            if set[i] == ']' && i > start {
                return Some((hit != negate, i + 1));
            }
            if i + 2 < set.len() && set[i + 1] == '-' && set[i + 2] != ']' {
                hit |= (set[i]..=set[i + 2]).contains(&c);
                i += 3;
            } else {
                hit |= set[i] == c;
                i += 1;
            }
        }
        None
    }
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|k| go(&p[1..], &n[k..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => match (n.first(), class(&p[1..], *n.first().unwrap_or(&'\0'))) {
                (Some(_), Some((true, used))) => go(&p[1 + used..], &n[1..]),
                (Some(_), Some((false, _))) | (None, _) => false,
                // An unclosed `[` matches itself.
                (Some(c), None) => *c == '[' && go(&p[1..], &n[1..]),
            },
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// A line's words: comments cut, quotes removed (escapes applied inside them), `{` and
/// `}` split off as words of their own.
fn words(line: &str) -> Result<Vec<Word>, String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    let mut chars = line.chars().peekable();
    let flush = |current: &mut Option<String>, out: &mut Vec<Word>| {
        if let Some(w) = current.take() {
            out.push(Word::Text(w));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '#' | '!' => break,
            '{' | '}' => {
                flush(&mut current, &mut out);
                out.push(if c == '{' { Word::Open } else { Word::Close });
            }
            '"' | '\'' => {
                let word = current.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        None => return Err(format!("quoted string without its closing {c}")),
                        Some(q) if q == c => break,
                        Some('\\') => match chars.next() {
                            Some('n') => word.push('\n'),
                            Some('t') => word.push('\t'),
                            Some('r') => word.push('\r'),
                            Some(other) => word.push(other),
                            None => return Err(format!("quoted string without its closing {c}")),
                        },
                        Some(other) => word.push(other),
                    }
                }
            }
            c if c.is_whitespace() => flush(&mut current, &mut out),
            c => current.get_or_insert_with(String::new).push(c),
        }
    }
    flush(&mut current, &mut out);
    Ok(out)
}

/// The statement tree of a file's lines.
fn build(lines: Vec<Line>, top: &Location) -> Result<Vec<Stmt>, SyntaxError> {
    // Open blocks: the statement that opened each, and the statements inside so far.
    let mut stack: Vec<(Stmt, Vec<Stmt>)> = Vec::new();
    let mut root: Vec<Stmt> = Vec::new();
    // Where the block closed last, for the message about a `}` too many.
    let mut last_close: Option<Location> = None;
    for line in lines {
        let mut pending: Vec<String> = Vec::new();
        for word in line.words {
            match word {
                Word::Text(w) => pending.push(w),
                Word::Open => {
                    let header = if pending.is_empty() {
                        // `{` on a line of its own opens the previous statement's block.
                        let siblings = match stack.last_mut() {
                            Some((_, inner)) => inner,
                            None => &mut root,
                        };
                        match siblings.pop() {
                            Some(prev) if prev.block.is_none() => prev,
                            _ => {
                                return Err(SyntaxError {
                                    at: line.at.clone(),
                                    message: "`{` opens a block without a keyword".into(),
                                })
                            }
                        }
                    } else {
                        Stmt {
                            words: std::mem::take(&mut pending),
                            block: None,
                            at: line.at.clone(),
                        }
                    };
                    stack.push((header, Vec::new()));
                }
                Word::Close => {
                    let siblings = match stack.last_mut() {
                        Some((_, inner)) => inner,
                        None => &mut root,
                    };
                    if !pending.is_empty() {
                        siblings.push(Stmt {
                            words: std::mem::take(&mut pending),
                            block: None,
                            at: line.at.clone(),
                        });
                    }
                    let Some((mut header, inner)) = stack.pop() else {
                        let after = match &last_close {
                            Some(at) => format!(" (the last block closed at line {})", at.line),
                            None => String::new(),
                        };
                        return Err(SyntaxError {
                            at: line.at.clone(),
                            message: format!("`}}` closes no block{after}: one `}}` too many"),
                        });
                    };
                    header.block = Some(inner);
                    match stack.last_mut() {
                        Some((_, parent)) => parent.push(header),
                        None => root.push(header),
                    }
                    last_close = Some(line.at.clone());
                }
            }
        }
        if !pending.is_empty() {
            let siblings = match stack.last_mut() {
                Some((_, inner)) => inner,
                None => &mut root,
            };
            siblings.push(Stmt {
                words: pending,
                block: None,
                at: line.at.clone(),
            });
        }
    }
    if let Some((header, _)) = stack.pop() {
        return Err(SyntaxError {
            at: top.clone(),
            message: format!(
                "the block `{}` opened at {} is never closed",
                header.words.join(" "),
                header.at
            ),
        });
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Files in memory: name → text.
    pub(crate) struct Memory(pub BTreeMap<PathBuf, String>);

    impl Files for Memory {
        fn read(&mut self, path: &Path) -> std::io::Result<String> {
            self.0
                .get(path)
                .cloned()
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        }

        fn matches(&mut self, pattern: &Path) -> std::io::Result<Vec<PathBuf>> {
            let dir = pattern.parent().unwrap_or(Path::new(""));
            let name = pattern.file_name().unwrap().to_string_lossy();
            Ok(self
                .0
                .keys()
                .filter(|p| p.parent() == Some(dir))
                .filter(|p| wildcard_match(&name, &p.file_name().unwrap().to_string_lossy()))
                .cloned()
                .collect())
        }
    }

    fn parse(text: &str) -> Result<Vec<Stmt>, SyntaxError> {
        let mut files = Memory(BTreeMap::from([(PathBuf::from("k.conf"), text.to_owned())]));
        read(&mut files, Path::new("k.conf"), "lb1")
    }

    fn shape(stmts: &[Stmt]) -> String {
        stmts
            .iter()
            .map(|s| match &s.block {
                Some(b) => format!("{}{{{}}}", s.words.join(" "), shape(b)),
                None => s.words.join(" "),
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    #[test]
    fn blocks_comments_and_quotes() {
        let text = "global_defs { # defs\n  router_id r1 ! old style\n}\n\
                    vrrp_instance VI_1\n{\n  authentication { auth_type PASS\n auth_pass \"a b#c\" }\n\
                    notify '/etc/x y.sh'\n}\n";
        let stmts = parse(text).unwrap();
        assert_eq!(
            shape(&stmts),
            "global_defs{router_id r1};vrrp_instance VI_1{authentication{auth_type PASS;auth_pass a b#c};notify /etc/x y.sh}"
        );
        assert_eq!(stmts[1].block.as_ref().unwrap()[1].at.line, 8);
    }

    #[test]
    fn a_stray_closing_brace_is_named_with_its_line() {
        let e = parse("a {\n b 1\n}\n}\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "k.conf:4: `}` closes no block (the last block closed at line 3): one `}` too many"
        );
        let e = parse("a {\n b {\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "k.conf:0: the block `b` opened at k.conf:2 is never closed"
        );
    }

    #[test]
    fn includes_are_relative_to_the_including_file_and_expand_wildcards() {
        let mut files = Memory(BTreeMap::from([
            (
                "etc/k.conf".into(),
                "a {\ninclude conf.d/*.conf\n}\n".into(),
            ),
            ("etc/conf.d/2.conf".into(), "two 2\n".into()),
            ("etc/conf.d/1.conf".into(), "one 1\n".into()),
            ("etc/conf.d/x.txt".into(), "no\n".into()),
        ]));
        let stmts = read(&mut files, Path::new("etc/k.conf"), "lb1").unwrap();
        assert_eq!(shape(&stmts), "a{one 1;two 2}");
        let inner = stmts[0].block.as_ref().unwrap();
        assert_eq!(inner[0].at.to_string(), "etc/conf.d/1.conf:1");
        let mut looped = Memory(BTreeMap::from([(
            "k.conf".into(),
            "include k.conf\n".into(),
        )]));
        let e = read(&mut looped, Path::new("k.conf"), "x").unwrap_err();
        assert!(e.message.contains("deeper than 32"), "{e}");
        let e = parse("include missing.conf\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("k.conf:1: cannot read missing.conf"),
            "{e}"
        );
    }

    #[test]
    fn conditionals_and_parameters() {
        let text = "$BASE=10.0.${SUB}\n$SUB=0\n@lb1 router_id one\n@lb2 router_id two\n\
                    @^lb1 priority 90\n@^lb2 priority 100\nvip ${BASE}.10/24\npass a$b\n";
        assert_eq!(
            shape(&parse(text).unwrap()),
            "router_id one;priority 100;vip 10.0.0.10/24;pass a$b"
        );
        assert_eq!(
            shape(&parse("x $NOPE ${NOPE}\n").unwrap()),
            "x $NOPE ${NOPE}"
        );
        let e = parse("$A=$B\n$B=$A\nx $A\n").unwrap_err();
        assert!(e.message.contains("deeper than 16"), "{e}");
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.conf", "a.conf"));
        assert!(!wildcard_match("*.conf", "a.conf.bak"));
        assert!(wildcard_match("vs-[0-9]?.conf", "vs-1a.conf"));
        assert!(!wildcard_match("vs-[!0-9].conf", "vs-1.conf"));
        assert!(wildcard_match("[", "["));
    }

    proptest! {
        /// Any text either parses or fails with a location inside it, never panics;
        /// what parses keeps every word outside comments.
        #[test]
        fn any_text_parses_or_names_a_line(text in "[a-z0-9 {}\"'#!@$^\\n\\t._-]{0,200}") {
            match parse(&text) {
                Ok(stmts) => {
                    fn count(s: &[Stmt]) -> usize {
                        s.iter().map(|s| 1 + s.block.as_deref().map_or(0, count)).sum()
                    }
                    prop_assert!(count(&stmts) <= text.len());
                }
                Err(e) => prop_assert!(e.at.line <= text.lines().count()),
            }
        }
    }
}
