"""TF's regular expressions (RE2 syntax and semantics) on Python's `re`, for the subset where the two agree.

TF's RegexReplace / StaticRegexReplace / RegexFullMatch run RE2 over UTF-8 bytes. `translate` rewrites an RE2
pattern into an equivalent Python pattern over text decoded with `surrogateescape` (each invalid UTF-8 byte one
character, as RE2 counts it), or raises `UnsupportedRegex` naming the construct:

supported: literals and escapes (`\\x41`, `\\x{263a}`, `\\n`, `\\t`, escaped punctuation, `\\Q...\\E`), `.` (not
    newline, no invalid byte), classes with ranges, negation, POSIX `[:alpha:]` and `\\d \\w \\s` inside,
    `\\d \\D \\w \\W \\s \\S` (ASCII, `\\s` without `\\v`, as RE2), `\\b \\B` (ASCII word characters), `^ $`
    (`$` is the end of the text only, as RE2), `\\A \\z`, groups `( )`, `(?: )`, `(?P<n> )`,
    alternation, `* + ? {n} {n,} {n,m}` and their lazy forms, flags `i s` (anywhere, scoped `(?i: )` too)
    and `m` (leading `(?m)` only).
refused: Unicode classes `\\p \\P`, `(?U)`, `\\C`, `{,n}` (RE2 reads it literally, Python as a repetition),
    repetitions above 1000, `(?m)` past the start, negated Perl classes inside brackets.
RE2 (TF's version) itself rejects lookarounds, backreferences, `\\Z`, `(?<n> )`: so are they here.

`global_replace` / `replace_first` follow RE2's GlobalReplace / Replace (an empty match right after the previous
match is skipped; rewrite strings know only `\\0`-`\\9` and `\\\\`).
"""

from __future__ import annotations

import functools
import re

_WORD = "0-9A-Za-z_"
_PERL = {"d": "0-9", "w": _WORD, "s": "\\t\\n\\f\\r "}  # RE2's ASCII Perl classes (no \v in \s)
_POSIX = {"alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ", "cntrl": "\\x00-\\x1f\\x7f",
          "digit": "0-9", "graph": "!-~", "lower": "a-z", "print": " -~", "punct": "!-/:-@\\[-`{-~",
          "space": "\\t\\n\\v\\f\\r ", "upper": "A-Z", "word": _WORD, "xdigit": "0-9A-Fa-f"}
_INVALID = "\\udc80-\\udcff"  # invalid UTF-8 bytes after surrogateescape: RE2 matches them by no class or `.`
_ESCAPES = {"a": "\\x07", "f": "\\x0c", "n": "\\n", "r": "\\r", "t": "\\t", "v": "\\x0b"}
_WORD_BOUNDARY = f"(?:(?<=[{_WORD}])(?![{_WORD}])|(?<![{_WORD}])(?=[{_WORD}]))"
_NOT_WORD_BOUNDARY = f"(?:(?<=[{_WORD}])(?=[{_WORD}])|(?<![{_WORD}])(?![{_WORD}]))"


class UnsupportedRegex(ValueError):
    """An RE2 pattern (or rewrite) outside the supported subset, or invalid for RE2 itself."""


def _lit(ch: str) -> str:
    return re.escape(ch)


class _Translator:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.multiline = False
        self.dotall = False

    def fail(self, what: str):
        raise UnsupportedRegex(f"regular expression {self.p!r}: {what} (at offset {self.i})")

    def peek(self, k: int = 0) -> str:
        return self.p[self.i + k] if self.i + k < len(self.p) else ""

    def run(self) -> str:
        out = []
        m = re.match(r"\(\?([is]*m[ims]*)\)", self.p)  # a leading (?m): Python takes global flags there only
        if m:
            self.multiline = True
            self.dotall = "s" in m.group(1)
            flags = m.group(1).replace("m", "")
            out.append("(?m" + flags + ")")
            self.i = m.end()
        while self.i < len(self.p):
            out.append(self.atom())
        return "".join(out)

    def atom(self) -> str:
        c = self.p[self.i]
        if c == "\\":
            return self.escape(in_class=False)
        if c == "[":
            return self.char_class()
        if c == "(":
            return self.group()
        if c == ".":
            self.i += 1
            return f"[^{_INVALID}]" if self.dotall else f"[^\\n{_INVALID}]"
        if c == "$":
            self.i += 1
            return "$" if self.multiline else "\\Z"
        if c == "{":
            return self.repeat_brace()
        if c in "^|)*+?":
            self.i += 1
            if c in "*+?" and self.peek() == "+":
                self.fail("possessive repetition")
            return c
        self.i += 1
        return _lit(c)

    def repeat_brace(self) -> str:
        m = re.compile(r"\{(\d*)(,?)(\d*)\}").match(self.p, self.i)
        if not m or (m.group(1) == "" and not m.group(2)) or (m.group(1) == "" and m.group(2)):
            if m and m.group(1) == "" and m.group(2):
                self.fail("'{,n}' (RE2 reads it literally, Python as a repetition)")
            self.i += 1
            return "\\{"  # RE2: a brace that starts no valid repetition is a literal
        lo = int(m.group(1))
        hi = int(m.group(3)) if m.group(3) else None
        if lo > 1000 or (hi is not None and hi > 1000):
            self.fail("a repetition count above 1000 (RE2's limit)")
        if hi is not None and hi < lo:
            self.fail("a repetition {n,m} with m < n")
        self.i = m.end()
        return m.group(0)

    def group(self) -> str:
        p = self.p
        self.i += 1
        if self.peek() != "?":
            return "("
        rest = p[self.i:]
        if rest.startswith("?P<"):
            m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*>").match(p, self.i + 3)
            if not m:
                self.fail("a bad group name")
            self.i = m.end()
            return "(?P<" + m.group(0)
        if rest.startswith("?:"):
            self.i += 2
            return "(?:"
        m = re.compile(r"\?([A-Za-z-]*)([:)])").match(p, self.i)
        if not m:
            self.fail("lookarounds, backreferences and other Perl groups (RE2 has none)")
        flags = m.group(1)
        if "U" in flags:
            self.fail("the ungreedy flag (?U)")
        if "m" in flags:
            self.fail("(?m) past the start of the pattern")
        if set(flags) - set("is") or not flags:
            self.fail(f"flags {flags!r} (only i and s may be set)")
        self.i = m.end()
        # a flag group (?i:...) covers its body; a bare (?i) the rest of the enclosing group (Python allows
        # global flags only at the start, so it becomes a scoped group too)
        saved = self.dotall
        self.dotall = self.dotall or "s" in flags
        body = self.scoped_body(bare=m.group(2) == ")")
        self.dotall = saved
        return f"(?{flags}:{body})"

    def scoped_body(self, bare: bool) -> str:
        out, depth = [], 0
        while self.i < len(self.p):
            c = self.p[self.i]
            if c == ")" and depth == 0:
                if not bare:
                    self.i += 1  # the flag group's own close
                break
            if c == "|" and depth == 0 and bare:
                self.fail("a flag group followed by an alternation in the same group")
            piece = self.atom()
            if c == "(" and not piece.endswith(")"):  # an opened group (a flag group comes back closed)
                depth += 1
            elif piece == ")":
                depth -= 1
            out.append(piece)
        else:
            if not bare:
                self.fail("a missing )")
        return "".join(out)

    def escape(self, in_class: bool) -> str:
        p = self.p
        c = p[self.i + 1] if self.i + 1 < len(p) else ""
        if not c:
            self.fail("a trailing backslash")
        self.i += 2
        if c in _PERL:
            return _PERL[c] if in_class else f"[{_PERL[c]}]"
        if c in "DWS":
            if in_class:
                self.fail(f"\\{c} inside a character class")
            return f"[^{_PERL[c.lower()]}{_INVALID}]"
        if c in "pP":
            self.fail("Unicode classes \\p / \\P (Python's re has none)")
        if c == "C":
            self.fail("\\C (any byte)")
        if c in "bB" and not in_class:
            return _WORD_BOUNDARY if c == "b" else _NOT_WORD_BOUNDARY
        if c == "A" and not in_class:
            return "\\A"
        if c == "z" and not in_class:
            return "\\Z"
        if c == "Q" and not in_class:
            end = p.find("\\E", self.i)
            end = len(p) if end < 0 else end
            text = p[self.i:end]
            self.i = min(len(p), end + 2)
            return "".join(_lit(ch) for ch in text)
        if c == "E" and not in_class:
            return ""
        if c in _ESCAPES:
            return _ESCAPES[c]
        if c == "x":
            m = re.compile(r"\{([0-9A-Fa-f]{1,8})\}|([0-9A-Fa-f]{2})").match(p, self.i)
            if not m:
                self.fail("a bad \\x escape")
            self.i = m.end()
            code = int(m.group(1) or m.group(2), 16)
            if code > 0x10FFFF:
                self.fail("a code point above U+10FFFF")
            return _lit(chr(code))
        if c in "01234567":
            if c == "0" or in_class:
                m = re.compile(r"[0-7]{0,2}").match(p, self.i)
                self.i = m.end()
                return _lit(chr(int(c + m.group(0), 8)))
            self.fail("backreferences (RE2 has none)")
        if c.isalnum():
            self.fail(f"the escape \\{c} (not RE2)")
        return _lit(c)

    def char_class(self) -> str:
        p = self.p
        self.i += 1
        negate = self.peek() == "^"
        if negate:
            self.i += 1
        items = []
        first = True
        while True:
            if self.i >= len(p):
                self.fail("a missing ]")
            c = p[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if p.startswith("[:", self.i):
                m = re.compile(r"\[:(\^?)([a-z]+):\]").match(p, self.i)
                if not m or m.group(2) not in _POSIX:
                    self.fail("a bad POSIX class")
                if m.group(1):
                    self.fail("a negated POSIX class inside brackets")
                items.append(_POSIX[m.group(2)])
                self.i = m.end()
                continue
            lo, single = self.class_char()
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.i += 1
                hi, single_hi = self.class_char()
                if not (single and single_hi):
                    self.fail("a range bounded by a class")
                items.append(f"{lo}-{hi}")
            else:
                items.append(lo)
        body = "".join(items)
        return f"[^{body}{_INVALID}]" if negate else f"[{body}]"

    def class_char(self) -> tuple[str, bool]:
        """One class member in Python's class syntax, and whether it is a single character."""
        c = self.p[self.i]
        if c == "\\":
            perl = (self.p[self.i + 1] if self.i + 1 < len(self.p) else "") in _PERL
            return self.escape(in_class=True), not perl
        self.i += 1
        return ("\\" + c if c in "\\]^-[" else c), True


@functools.lru_cache(maxsize=256)
def translate(pattern: str) -> re.Pattern:
    """The compiled Python equivalent of an RE2 `pattern` (raises UnsupportedRegex)."""
    py = _Translator(pattern).run()
    try:
        return re.compile(py)
    except re.error as err:
        raise UnsupportedRegex(f"regular expression {pattern!r}: {err}") from None


def rewrite_groups(rewrite: str) -> int:
    """The highest group a rewrite string names (\\0-\\9); -1 when it holds an escape RE2 rejects."""
    most, i = 0, 0
    while i < len(rewrite):
        if rewrite[i] == "\\":
            nxt = rewrite[i + 1] if i + 1 < len(rewrite) else ""
            if nxt.isdigit():
                most = max(most, int(nxt))
            elif nxt != "\\":
                return -1
            i += 2
        else:
            i += 1
    return most


def _expand(rewrite: str, m: re.Match, out: list) -> None:
    """RE2::Rewrite: \\N -> group N ('' when it did not take part), \\\\ -> \\; a bad escape ends the rewrite."""
    i = 0
    while i < len(rewrite):
        c = rewrite[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = rewrite[i + 1] if i + 1 < len(rewrite) else ""
        if nxt.isdigit():
            out.append(m.group(int(nxt)) or "")
        elif nxt == "\\":
            out.append("\\")
        else:
            return  # RE2 logs "invalid rewrite pattern" and stops here
        i += 2


def _decode(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _encode(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def replace(text: bytes, regex: re.Pattern, rewrite: str, global_: bool) -> bytes:
    """RE2::GlobalReplace (global_) or RE2::Replace of `regex` in `text` by `rewrite`."""
    if rewrite_groups(rewrite) > regex.groups:
        return text  # RE2 refuses a rewrite naming a missing group: the text is unchanged
    s = _decode(text)
    if not global_:
        if rewrite_groups(rewrite) < 0:
            return text  # RE2::Replace fails on an invalid rewrite: the text is unchanged
        m = regex.search(s)
        if m is None:
            return text
        out = [s[:m.start()]]
        _expand(rewrite, m, out)
        out.append(s[m.end():])
        return _encode("".join(out))
    out: list[str] = []
    p, lastend, count = 0, -1, 0
    while p <= len(s):
        m = regex.search(s, p)
        if m is None:
            break
        if p < m.start():
            out.append(s[p:m.start()])
        if m.start() == lastend and m.start() == m.end():
            # an empty match right after the previous match: RE2 skips one character
            if p < len(s):
                out.append(s[p])
            p += 1
            continue
        _expand(rewrite, m, out)
        p = lastend = m.end()
        count += 1
    if count == 0:
        return text
    if p < len(s):
        out.append(s[p:])
    return _encode("".join(out))


def full_match(text: bytes, regex: re.Pattern) -> bool:
    return regex.fullmatch(_decode(text)) is not None
