//! The example gallery: tasks shipped with the site (`examples/examples.json`), each filling the
//! prompts and targets in one click, as a visitor picking those files would.

use serde::Deserialize;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Blob, Element, File, HtmlElement, HtmlImageElement, Response};

use super::dom::{Listener, element, find, set_hidden, window};
use super::{Msg, dispatch};
use crate::web::js_text;

/// Where the gallery lives, relative to the page; every path in the index is relative to it.
const EXAMPLES_DIR: &str = "examples/";

/// One entry of `examples/examples.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Example {
    pub id: String,
    pub title: String,
    pub description: String,
    pub thumbnail: String,
    pub prompts: Vec<ExamplePrompt>,
    pub targets: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ExamplePrompt {
    pub image: String,
    pub mask: String,
}

/// An example's files, fetched.
pub struct ExampleFiles {
    pub prompts: Vec<(File, File)>,
    pub targets: Vec<File>,
}

pub struct Gallery {
    panel: Element,
    gallery: Element,
    examples: Vec<Example>,
    _listeners: Vec<Listener>,
}

impl Gallery {
    pub fn new(root: &web_sys::Document) -> Result<Self, JsValue> {
        let gallery: Element = find(root, "examples")?;
        let panel = gallery.closest("section")?.ok_or("the example gallery lies in no section")?;
        wasm_bindgen_futures::spawn_local(async {
            let index = fetch_index().await.map_err(|e| js_text(&e));
            dispatch(Msg::ExamplesLoaded(index));
        });
        Ok(Gallery { panel, gallery, examples: Vec::new(), _listeners: Vec::new() })
    }

    /// Shows the examples (a site without them shows no gallery).
    pub fn show(&mut self, examples: Vec<Example>) -> Result<(), JsValue> {
        self._listeners.clear();
        self.gallery.set_inner_html("");
        for (index, example) in examples.iter().enumerate() {
            let button: HtmlElement = element("button", "example")?;
            button.set_attribute("type", "button")?;
            button.set_attribute("data-testid", &format!("example-{}", example.id))?;
            button.set_title(&example.description);
            let thumb: HtmlImageElement = element("img", "thumb")?;
            thumb.set_src(&format!("{EXAMPLES_DIR}{}", example.thumbnail));
            thumb.set_alt("");
            let caption: Element = element("span", "")?;
            caption.set_text_content(Some(&example.title));
            button.append_child(&thumb)?;
            button.append_child(&caption)?;
            self._listeners
                .push(Listener::new(&button, "click", move |_| dispatch(Msg::ExampleClicked(index)))?);
            self.gallery.append_child(&button)?;
        }
        set_hidden(&self.panel, examples.is_empty());
        self.examples = examples;
        Ok(())
    }

    pub fn get(&self, index: usize) -> Option<&Example> {
        self.examples.get(index)
    }
}

async fn fetch_index() -> Result<Vec<Example>, JsValue> {
    let response = fetch(&format!("{EXAMPLES_DIR}examples.json")).await?;
    let text = JsFuture::from(response.text()?).await?.as_string().unwrap_or_default();
    serde_json::from_str(&text).map_err(|e| JsValue::from_str(&format!("examples/examples.json: {e}")))
}

async fn fetch(path: &str) -> Result<Response, JsValue> {
    let response: Response = JsFuture::from(window().fetch_with_str(path)).await?.dyn_into()?;
    if !response.ok() {
        return Err(JsValue::from_str(&format!("{path}: the server answered {}", response.status())));
    }
    Ok(response)
}

/// A file of the gallery as a `File` named like it, as if the visitor had picked it.
async fn fetch_file(path: &str) -> Result<File, JsValue> {
    let url = format!("{EXAMPLES_DIR}{path}");
    let blob: Blob = JsFuture::from(fetch(&url).await?.blob()?).await?.dyn_into()?;
    super::dom::file_of(&blob, path.rsplit('/').next().unwrap_or(path))
}

pub async fn fetch_example(example: Example) -> Result<ExampleFiles, String> {
    let fetched = async {
        let mut prompts = Vec::new();
        for prompt in &example.prompts {
            prompts.push((fetch_file(&prompt.image).await?, fetch_file(&prompt.mask).await?));
        }
        let mut targets = Vec::new();
        for target in &example.targets {
            targets.push(fetch_file(target).await?);
        }
        Ok::<_, JsValue>(ExampleFiles { prompts, targets })
    };
    fetched.await.map_err(|e| format!("cannot load the example {}: {}", example.title, js_text(&e)))
}
