//! The browser client's files, embedded at build time so the binary is
//! the whole deployment: one table from URL path to content type and
//! bytes, and the headers every page answer carries.

/// The Content-Security-Policy. The page may load only its own script,
/// style and images and talk only to its own host: with no inline script
/// or style allowed, a message that slipped into the page as markup could
/// still run nothing. A macro, so that [`HEADERS`] is one literal.
macro_rules! csp {
    () => {
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
         img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    };
}

/// The headers of every asset answer, each line ended by CRLF. `no-cache`
/// (revalidate, not "never store") because a new binary changes the files
/// under the same URLs.
pub const HEADERS: &str = concat!(
    "Content-Security-Policy: ",
    csp!(),
    "\r\n",
    "X-Content-Type-Options: nosniff\r\n",
    "Referrer-Policy: no-referrer\r\n",
    "Cache-Control: no-cache\r\n",
);

/// One embedded file.
pub struct Asset {
    pub path: &'static str,
    pub kind: &'static str,
    pub body: &'static str,
}

/// Every file the page loads; nothing else is served from the disk or
/// the binary.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        kind: "text/html; charset=utf-8",
        body: include_str!("web/index.html"),
    },
    Asset {
        path: "/app.js",
        kind: "text/javascript; charset=utf-8",
        body: include_str!("web/app.js"),
    },
    Asset {
        path: "/app.css",
        kind: "text/css; charset=utf-8",
        body: include_str!("web/app.css"),
    },
    Asset {
        path: "/favicon.svg",
        kind: "image/svg+xml",
        body: include_str!("web/favicon.svg"),
    },
];

/// The file served at `path` (the query already removed), if any.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_found_with_its_type() {
        for (path, kind) in [
            ("/", "text/html"),
            ("/app.js", "text/javascript"),
            ("/app.css", "text/css"),
            ("/favicon.svg", "image/svg+xml"),
        ] {
            let asset = find(path).unwrap_or_else(|| panic!("{path} is not served"));
            assert!(asset.kind.starts_with(kind), "{path}: {}", asset.kind);
            assert!(!asset.body.is_empty(), "{path} is empty");
        }
        assert!(find("/index.html").is_none());
        assert!(find("/../Cargo.toml").is_none());
    }

    #[test]
    fn headers_carry_the_policy() {
        let csp = csp!();
        assert!(HEADERS.contains(&format!("Content-Security-Policy: {csp}\r\n")));
        for h in [
            "X-Content-Type-Options: nosniff\r\n",
            "Referrer-Policy: no-referrer\r\n",
            "Cache-Control: no-cache\r\n",
        ] {
            assert!(HEADERS.contains(h), "{h}");
        }
        assert!(!csp.contains("unsafe") && csp.contains("script-src 'self'"));
    }

    /// Server strings must reach the page as text: no API that parses
    /// markup or code from a string may appear in the script.
    #[test]
    fn the_script_never_parses_strings_as_markup_or_code() {
        let js = find("/app.js").map_or("", |a| a.body);
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setTimeout('",
            "setTimeout(\"",
            "createContextualFragment",
            "DOMParser",
        ] {
            assert!(!js.contains(banned), "app.js uses {banned}");
        }
    }

    /// The page works offline of any third party: nothing is loaded from
    /// another host and nothing inline would need the policy loosened.
    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_nothing_inline() {
        let html = find("/").map_or("", |a| a.body);
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!html.contains("<style") && !html.contains(" style="));
        assert!(!html.contains(" on"), "an inline event handler");
        for tag in html.match_indices("<script") {
            let rest = &html[tag.0..];
            let end = rest.find("</script>").unwrap_or(0);
            assert!(rest[..end].contains("src=\"/app.js\""), "inline script");
        }
        let css = find("/app.css").map_or("", |a| a.body);
        assert!(!css.contains("@import") && !css.contains("url(http"));
    }

    /// The ids the browser tests and the script rely on (the DOM contract)
    /// are in the page: renaming one breaks both.
    #[test]
    fn the_page_has_every_id_of_the_dom_contract() {
        let html = find("/").map_or("", |a| a.body);
        for id in [
            "status",
            "me",
            "rooms",
            "members",
            "topic",
            "log",
            "composer",
            "login-open",
            "login",
            "login-account",
            "login-password",
            "login-submit",
            "register-submit",
            "login-error",
        ] {
            assert!(html.contains(&format!(" id=\"{id}\"")), "no #{id}");
        }
        assert!(html.contains("<textarea id=\"composer\""));
        assert!(html.contains("<dialog id=\"login\""));
        assert!(html.contains("role=\"log\""));
    }
}
