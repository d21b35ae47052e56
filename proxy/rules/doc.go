// Package rules decides who may pass the proxy: which paths anyone may
// reach, which logged-in users may reach which paths, and which paths nobody
// may reach. The rules come from a plain text file meant to be read at a
// glance:
//
//	# kind  methods   path        conditions (any one suffices)
//	public  GET,HEAD  /healthz
//	public  GET       /static/
//	allow   *         /admin/     group:admins  email:root@example.com
//	allow   *         /           email-domain:example.com
//	allow   GET       /reports/   claim:https://example.com/roles=analyst
//	allow   *         /partners/  email-domain:*.partner.example  unverified-email-ok
//	deny    *         /internal/
//
// Read it as: health checks and static files are open to everyone; /admin/
// needs the admins group or root's address; /reports/ takes GET from
// analysts; /partners/ takes any partner subdomain address, verified or not;
// /internal/ is closed to all; anything else needs an example.com address.
//
// # Lines
//
// One rule per line: KIND METHODS PATH, then conditions and flags, separated
// by spaces or tabs. A field that starts with # begins a comment that runs to
// the end of the line; blank lines are ignored. A line holds at most 16 KiB of
// UTF-8. A file must hold at least one rule: an empty rules file is an error,
// because it would turn every request away. (The proxy runs without a rules
// file when every logged-in user may pass.)
//
// # Kinds
//
//   - public: anyone passes, logged in or not, but only when the request
//     path is canonical (see "Request paths").
//   - allow: a logged-in user passes if any one of the rule's conditions
//     holds, and gets 403 otherwise. An allow rule needs at least one
//     condition.
//   - deny: nobody passes; logged-in users get 403.
//
// Visitors who are not logged in only ever get Public or NeedLogin: they are
// sent to log in before learning that a path is closed to them.
//
// # Methods
//
// * for every method, or a comma-separated list of uppercase methods such as
// GET,HEAD. Methods match exactly: GET does not imply HEAD.
//
// # Paths
//
// A path is a prefix that matches on segment boundaries: /admin/ and /admin
// both match /admin, /admin/ and /admin/x, never /administrator; / matches
// every path. A trailing slash makes no difference, there are no exact-match
// paths, and there are no wildcards (/static/* is an error: write /static/).
// Paths are case-sensitive unless Options.CaseInsensitive says the upstream
// folds case (see "Request paths"). Write paths decoded
// (/café/, not /caf%C3%A9/), without //, . or .. segments, \, ;, %, ?, # or *.
//
// # Hosts
//
// A path written after a host name, as in wiki.example.com/admin/, scopes
// the rule to that host: it applies only to requests whose routed host (the
// Host header's name, whatever its case, port or trailing dot; see
// route.HostName) is wiki.example.com. A plain /path applies to every host.
// Among the rules that apply, the longest path still decides; between a
// rule for the host and one for every host with the same path, the host's
// rule decides. Write the host in lower case, without port, trailing dot or
// wildcard. A request whose host is not a host name never passes.
//
// # Conditions
//
//   - any: every logged-in user.
//   - email:ADDR: the email claim equals ADDR, ignoring the case of ASCII
//     letters.
//   - email-domain:DOMAIN: the part of the email claim after its last @ is
//     DOMAIN (ASCII case ignored). Subdomains do not match, unless written as
//     *.DOMAIN, which matches every subdomain of DOMAIN but not DOMAIN itself;
//     list both to take both.
//   - group:NAME: shorthand for claim:groups=NAME.
//   - claim:NAME=VALUE: the ID-token claim NAME is the string VALUE, a
//     boolean or number written as VALUE (true, 42), or a list with an
//     element that is. NAME is a top-level claim, often an Auth0 namespaced
//     one such as https://example.com/roles; values are case-sensitive.
//
// NAME ends at the first =, so a value may contain = (claim:groups=cn=admins,dc=example,dc=com)
// and a name may not. Condition values are taken literally, except that %XX
// stands for the byte with hex value XX: write %20 for a space
// (group:Domain%20Admins), %25 for %, and %3D for an = inside a claim name.
//
// Email conditions pass only when the email_verified claim is true (the
// boolean, or the string "true" that some providers send), since most
// providers let anyone sign up with an address they do not own. The flag
// unverified-email-ok, written anywhere after the path, lifts that
// requirement for the rule's email conditions; it is an error on a rule
// without one.
//
// # Precedence
//
// Among the rules whose methods include the request's method and whose path
// matches, the one with the longest path decides, as with nginx locations;
// between rules with the same path, the first in the file decides. A later
// rule that can never decide (same path, methods covered by an earlier rule)
// is an error: put all the conditions for a path and method on one line. When
// no rule matches, the request is denied (fail closed).
//
// # Request paths
//
// Decide reads only the request's escaped path (URL.EscapedPath()), never the
// query or fragment. It decodes percent-escapes once, cleans the result as
// path.Clean does (resolving . and .., merging //, dropping a trailing
// slash) and matches the rules against that.
//
// Upstreams normalize paths in different ways: some decode twice, some take \
// for / or drop ;params (Tomcat, Jetty: /public/..;/admin), some keep %2F
// inside a segment, some fold Unicode look-alikes such as U+FF0F into /. A path
// that any of them could read as escaping a public prefix must not be public,
// so a public rule applies only to a canonical path, one that reads the same
// everywhere:
//
//   - it starts with /, and has no empty (//), . or .. segment, nor a
//     segment made only of dots;
//   - no raw \, ;, control byte, non-ASCII byte or other character that
//     must be escaped;
//   - percent-escapes only for what may not appear unescaped: non-ASCII
//     bytes, space and " < > [ ] ^ ` { | }; so no %2e, %2F, %5c, %25, %3B,
//     %3F, %23, %61 (a) or escaped control byte, in either case;
//   - its decoded bytes are valid UTF-8 (no overlong %C0%AE), and every
//     non-ASCII character in it is a letter, mark or digit (no U+2025 or
//     U+FF0F) that Unicode's compatibility normalization (NFKC) leaves as
//     it is (no fullwidth U+FF41 for a, no mathematical or ligature forms);
//   - no segment ends in a dot or a space, which Windows servers (IIS,
//     ASP.NET) drop: they serve /admin./ as /admin/.
//
// Any other path is decided as if there were no public rules, so it needs a
// login. The same tricks could also slip past a stricter allow or deny rule
// (/admin;/x is /admin/x to Tomcat but not under /admin/ to path.Clean), so a
// non-canonical path must also pass under every reading an upstream might
// make of it: decoded once, decoded twice, left encoded, decoded but for
// %2F, and each of those read by any chain of the lenient server quirks, in
// any order (overlong UTF-8, compatibility forms and look-alikes folded to
// ASCII, \ taken for /, ? and # ending the path, ;params dropped, trailing
// dots and spaces of a segment dropped, dot segments resolved): IIS drops
// the dots of /admin／.. before a best-fit conversion reads ／ as /. A path
// with more than 1024 readings is refused. The strictest outcome
// wins: a request passes an allow rule only if it would pass under every
// reading. A path with a control byte in any reading, a broken escape, or
// more than 4 KiB that is not canonical never passes (Deny, or NeedLogin
// for a visitor).
//
// Paths are case-sensitive by default. If the upstream treats /ADMIN like
// /admin (IIS, ASP.NET, a case-insensitive file system), parse the rules
// with Options.CaseInsensitive (AUTHPROXY_RULES_CASE_INSENSITIVE=true):
// rule paths and every reading of a request path are then compared in lower
// case, so the rules for /admin/ cover /ADMIN and /%41dmin too.
package rules
