//! How the browser app fetches and keeps the model, as decisions that need no browser (so they are
//! tested natively): which URLs a `?model=` URL stands for, which origins may serve it, whether a copy
//! in browser storage is still the server's, and what to tell the user when a fetch fails.

use std::fmt;

use crate::weights::LoadError;

/// The two files of a model at a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelUrls {
    pub config: String,
    pub weights: String,
    /// A `.safetensors` URL may have no `config.json` beside it (the released ViT-L config is used
    /// then, as the CLI does); a directory must hold one.
    pub config_optional: bool,
    /// For a directory: where its shards' index would be (`model.safetensors.index.json`), read when
    /// the directory holds no `model.safetensors` (docs/MODEL.md §26).
    pub index: Option<String>,
    /// The directory URL with its final `/`, and the query every file URL carries.
    dir: String,
    query: String,
}

impl ModelUrls {
    /// The URL of the file `name` in the model's directory (a shard the index names).
    pub fn beside(&self, name: &str) -> String {
        format!("{}{name}{}", self.dir, self.query)
    }
}

/// The parts of an absolute URL as a browser normalises it (`new URL(..).href`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct UrlParts<'a> {
    scheme: &'a str,
    /// `scheme://host[:port]`, without user info.
    origin: String,
    host: &'a str,
    /// From the first `/` of the path; `/` at least.
    path: &'a str,
    /// `?...` or empty. The fragment is dropped: it never reaches a server.
    query: &'a str,
}

fn split_url(href: &str) -> Option<UrlParts<'_>> {
    let (scheme, rest) = href.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(authority_end);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    // `[::1]:8080`: the port follows the closing bracket of an IPv6 address.
    let host = match host_port.strip_prefix('[') {
        Some(v6) => &host_port[..v6.find(']')? + 2],
        None => host_port.split(':').next().unwrap_or(host_port),
    };
    let rest = rest.split('#').next().unwrap_or("");
    let (path, query) = match rest.find('?') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let path = if path.is_empty() { "/" } else { path };
    (!host.is_empty()).then(|| UrlParts {
        scheme,
        origin: format!("{scheme}://{host_port}"),
        host,
        path,
        query,
    })
}

/// Whether `host` is the Hugging Face hub or its file servers (the page's Content-Security-Policy
/// allows exactly these: `huggingface.co`, `*.huggingface.co`, `*.hf.co`).
fn is_hub(host: &str) -> bool {
    host == "huggingface.co" || host.ends_with(".huggingface.co") || host.ends_with(".hf.co")
}

/// Why a model URL is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelUrlError {
    NotAUrl(String),
    /// Only this site and the hub are fetched from: the worker is not bound by the page's CSP meta
    /// tag, so it enforces the same list itself.
    Refused {
        origin: String,
    },
    Pth(String),
}

impl fmt::Display for ModelUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelUrlError::NotAUrl(url) => write!(f, "`{url}` is not a web address (http:// or https://)"),
            ModelUrlError::Refused { origin } => write!(
                f,
                "refusing to fetch a model from {origin}: only this site and https://huggingface.co are allowed"
            ),
            ModelUrlError::Pth(url) => {
                write!(f, "{url}: the browser reads .safetensors only; convert it with `seggpt convert`")
            }
        }
    }
}

/// `config.json` and weights URLs for a model URL (`href`, normalised by the browser): a
/// `.safetensors` file (config beside it) or a directory holding `config.json` +
/// `model.safetensors` (with or without its final `/`). A query string is kept on both file URLs
/// (a signed or versioned address needs it on each file), after the file name.
pub fn model_urls(href: &str, page_origin: &str) -> Result<ModelUrls, ModelUrlError> {
    let url = split_url(href).ok_or_else(|| ModelUrlError::NotAUrl(href.to_string()))?;
    if !matches!(url.scheme, "http" | "https") {
        return Err(ModelUrlError::NotAUrl(href.to_string()));
    }
    let hub = url.scheme == "https" && is_hub(url.host);
    if url.origin != page_origin && !hub {
        return Err(ModelUrlError::Refused { origin: url.origin });
    }
    let (origin, path, query) = (&url.origin, url.path, url.query);
    if path.ends_with(".safetensors") {
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        Ok(ModelUrls {
            config: format!("{origin}{dir}config.json{query}"),
            weights: format!("{origin}{path}{query}"),
            config_optional: true,
            index: None,
            dir: format!("{origin}{dir}"),
            query: query.to_string(),
        })
    } else if path.ends_with(".pth") {
        Err(ModelUrlError::Pth(href.to_string()))
    } else {
        let dir = path.trim_end_matches('/');
        Ok(ModelUrls {
            config: format!("{origin}{dir}/config.json{query}"),
            weights: format!("{origin}{dir}/model.safetensors{query}"),
            config_optional: false,
            index: Some(format!("{origin}{dir}/{}{query}", crate::weights::INDEX_FILE)),
            dir: format!("{origin}{dir}/"),
            query: query.to_string(),
        })
    }
}

/// Why fetching a model file failed.
#[derive(Debug)]
pub enum FetchError {
    /// The server answered with this HTTP status.
    Status(u16),
    /// No answer could be read: offline, the server is down, or the browser blocked it (CORS, CSP).
    Network(String),
    /// The bytes are not the model the config describes.
    Invalid(LoadError),
    /// Writing to browser storage failed.
    Storage(String),
}

impl FetchError {
    /// The message for the user, naming the URL.
    pub fn describe(&self, url: &str) -> String {
        match self {
            FetchError::Status(404) => format!("{url}: the server has no such file (HTTP 404)"),
            FetchError::Status(code @ (401 | 403)) => {
                format!("{url}: the server refused access (HTTP {code}); is the model private?")
            }
            FetchError::Status(code) => format!("{url}: the server answered HTTP {code}"),
            // The browser hides the cause of a failed fetch from the page (a CORS refusal reads the
            // same as a server that is down), so the text lists the likely ones.
            FetchError::Network(why) => format!(
                "{url} could not be fetched ({why}). Either the network or the server is down, or the \
                 browser blocked the request: a model on another site must be served with an \
                 `Access-Control-Allow-Origin` header (CORS), and this page's Content-Security-Policy only \
                 allows this site and huggingface.co."
            ),
            FetchError::Invalid(err) => format!("{url}: {err}"),
            FetchError::Storage(why) => format!("{url}: storing the download in the browser failed ({why})"),
        }
    }
}

/// What identifies one version of the weights file on the server, as its response headers say.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// `Content-Length`.
    pub bytes: Option<u64>,
}

impl Validators {
    fn etag_value(&self) -> Option<&str> {
        // A weak validator (`W/"..."`) names the same version as its strong form for our purpose:
        // servers switch between them when they compress, and safetensors are served uncompressed.
        self.etag.as_deref().map(|e| e.strip_prefix("W/").unwrap_or(e))
    }
}

/// What to do with a copy in browser storage, once the server has been asked about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// Use the stored copy. `note`: why, when it is not the plain case of a confirmed current copy.
    Current { note: Option<String> },
    /// The server has another version: download it again.
    Changed,
    /// The server could not be reached: use the stored copy and say so.
    Offline,
}

/// The note shown when the stored copy is used without the server's word on it.
pub const OFFLINE_NOTE: &str = "offline: using the copy in browser storage";

/// Compares the stored copy's validators with the server's answer to a `HEAD` of the weights URL
/// (`Err`: the request failed before any answer). The strongest validator both sides have decides:
/// the ETag, then `Last-Modified`, then the size.
pub fn freshness(stored: &Validators, answer: Result<(u16, Validators), String>) -> Freshness {
    let (status, server) = match answer {
        Ok(answer) => answer,
        Err(_) => return Freshness::Offline,
    };
    if !(200..300).contains(&status) {
        return Freshness::Current {
            note: Some(format!(
                "the server answered HTTP {status} when asked for the current version: using the copy in \
                 browser storage"
            )),
        };
    }
    if let (Some(ours), Some(theirs)) = (stored.etag_value(), server.etag_value()) {
        return if ours == theirs { Freshness::Current { note: None } } else { Freshness::Changed };
    }
    if let (Some(ours), Some(theirs)) = (&stored.last_modified, &server.last_modified) {
        return if ours == theirs { Freshness::Current { note: None } } else { Freshness::Changed };
    }
    match (stored.bytes, server.bytes) {
        (Some(ours), Some(theirs)) if ours != theirs => Freshness::Changed,
        (Some(_), Some(_)) => Freshness::Current {
            note: Some(
                "the server gives no version (ETag or Last-Modified), only the same size: using the copy in \
                 browser storage"
                    .into(),
            ),
        },
        _ => Freshness::Current {
            note: Some("the server gives no version information: using the copy in browser storage".into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = "http://127.0.0.1:8080";

    fn urls(href: &str) -> ModelUrls {
        model_urls(href, SITE).unwrap()
    }

    #[test]
    fn a_directory_url_names_both_files_with_or_without_its_slash() {
        for href in ["http://127.0.0.1:8080/model/", "http://127.0.0.1:8080/model"] {
            let got = urls(href);
            assert_eq!(got.config, "http://127.0.0.1:8080/model/config.json", "{href}");
            assert_eq!(got.weights, "http://127.0.0.1:8080/model/model.safetensors", "{href}");
            assert!(!got.config_optional);
        }
    }

    #[test]
    fn a_query_string_stays_after_the_file_name() {
        // The old code appended `config.json` to the whole href, after the query.
        let got = urls("http://127.0.0.1:8080/model/?rev=2");
        assert_eq!(got.config, "http://127.0.0.1:8080/model/config.json?rev=2");
        assert_eq!(got.weights, "http://127.0.0.1:8080/model/model.safetensors?rev=2");
        let got = urls("http://127.0.0.1:8080/model?rev=2#top");
        assert_eq!(got.weights, "http://127.0.0.1:8080/model/model.safetensors?rev=2");
        let got = urls("http://127.0.0.1:8080/m/small.safetensors?download=true");
        assert_eq!(got.config, "http://127.0.0.1:8080/m/config.json?download=true");
        assert_eq!(got.weights, "http://127.0.0.1:8080/m/small.safetensors?download=true");
        assert!(got.config_optional);
    }

    #[test]
    fn a_directory_may_hold_shards_and_their_index_beside_each_other() {
        let got = urls("http://127.0.0.1:8080/model/?rev=2");
        assert_eq!(
            got.index.as_deref(),
            Some("http://127.0.0.1:8080/model/model.safetensors.index.json?rev=2")
        );
        assert_eq!(
            got.beside("model-00001-of-00002.safetensors"),
            "http://127.0.0.1:8080/model/model-00001-of-00002.safetensors?rev=2"
        );
        // A file URL names one file: no shards.
        assert_eq!(urls("http://127.0.0.1:8080/m/small.safetensors").index, None);
    }

    #[test]
    fn the_hub_is_allowed_over_https_only() {
        let hub = "https://huggingface.co/BAAI/seggpt-vit-large/resolve/main/";
        assert_eq!(urls(hub).weights, format!("{hub}model.safetensors"));
        assert!(model_urls("https://cdn-lfs.hf.co/x/model.safetensors", SITE).is_ok());
        assert!(model_urls("https://user:pw@huggingface.co/m/", SITE).is_ok());
        for refused in [
            "http://huggingface.co/m/",
            "https://huggingface.co.evil.example/m/",
            "https://evilhuggingface.co/m/",
            "http://127.0.0.1:8081/model/",
            "https://127.0.0.1:8080/model/",
        ] {
            let err = model_urls(refused, SITE).unwrap_err();
            assert!(matches!(err, ModelUrlError::Refused { .. }), "{refused}: {err:?}");
            assert!(err.to_string().contains("only this site and https://huggingface.co"), "{err}");
        }
    }

    #[test]
    fn pth_and_non_web_urls_are_refused_with_the_reason() {
        let err = model_urls("http://127.0.0.1:8080/seggpt_vit_large.pth", SITE).unwrap_err();
        assert!(err.to_string().contains("seggpt convert"), "{err}");
        for bad in ["file:///tmp/model/", "model/", "http://"] {
            assert!(matches!(model_urls(bad, SITE), Err(ModelUrlError::NotAUrl(_))), "{bad}");
        }
        assert_eq!(
            split_url("http://[::1]:8080/m?q").map(|u| (u.host, u.origin, u.path, u.query)),
            Some(("[::1]", "http://[::1]:8080".to_string(), "/m", "?q"))
        );
    }

    #[test]
    fn a_failed_fetch_names_cors_and_the_content_security_policy() {
        let text =
            FetchError::Network("Failed to fetch".into()).describe("https://example.org/m.safetensors");
        assert!(text.starts_with("https://example.org/m.safetensors could not be fetched"), "{text}");
        assert!(text.contains("Access-Control-Allow-Origin") && text.contains("Content-Security-Policy"));
        assert!(FetchError::Status(404).describe("u").contains("no such file"));
    }

    fn validators(etag: Option<&str>, last_modified: Option<&str>, bytes: Option<u64>) -> Validators {
        Validators { etag: etag.map(Into::into), last_modified: last_modified.map(Into::into), bytes }
    }

    #[test]
    fn the_etag_decides_first_then_last_modified_then_the_size() {
        let stored = validators(Some("\"v1\""), Some("Mon, 01 Jan 2024 00:00:00 GMT"), Some(100));
        let same = Freshness::Current { note: None };
        assert_eq!(freshness(&stored, Ok((200, stored.clone()))), same);
        assert_eq!(freshness(&stored, Ok((200, validators(Some("W/\"v1\""), None, None)))), same);
        // A new ETag wins over an unchanged date and size.
        let new_etag = validators(Some("\"v2\""), stored.last_modified.as_deref(), Some(100));
        assert_eq!(freshness(&stored, Ok((200, new_etag))), Freshness::Changed);
        // Without an ETag on the server, the date decides.
        let newer = validators(None, Some("Tue, 02 Jan 2024 00:00:00 GMT"), Some(100));
        assert_eq!(freshness(&stored, Ok((200, newer))), Freshness::Changed);
        let same_date = validators(None, stored.last_modified.as_deref(), Some(7));
        assert_eq!(freshness(&stored, Ok((200, same_date))), same);
        // With neither, a different size still means another file.
        let sized = validators(None, None, Some(100));
        assert_eq!(freshness(&sized, Ok((200, validators(None, None, Some(101))))), Freshness::Changed);
        assert!(matches!(
            freshness(&sized, Ok((200, sized.clone()))),
            Freshness::Current { note: Some(note) } if note.contains("no version")
        ));
    }

    #[test]
    fn no_answer_means_offline_and_an_error_status_keeps_the_copy() {
        let stored = validators(Some("\"v1\""), None, Some(100));
        assert_eq!(freshness(&stored, Err("Failed to fetch".into())), Freshness::Offline);
        assert!(matches!(
            freshness(&stored, Ok((503, Validators::default()))),
            Freshness::Current { note: Some(note) } if note.contains("HTTP 503")
        ));
    }
}
