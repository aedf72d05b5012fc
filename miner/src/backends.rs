//! What runs a service for `deai miner`: built-in demos, an OpenAI-compatible server, or a
//! command.
//!
//! - `demo`: small, honest algorithms so that a network works with no model installed. They are
//!   demos, not AI: `text-generation` answers with the prompt's words in reverse order and a
//!   word count; `text-embedding` is a 64-dimension hashed bag of words (the hashing trick),
//!   L2-normalised; `image-generation` draws a 32×32 greyscale PGM whose pixels come from the
//!   prompt's hash.
//! - `openai:<base url>[#model]`: `POST <base>/v1/chat/completions` (or `/v1/embeddings` for
//!   `text-embedding`), the API that vLLM, Ollama and llama.cpp's server expose.
//! - `command:<program> [args...]`: the payload on stdin, the output from stdout.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Largest output a backend may return, in bytes.
pub const MAX_OUTPUT_BYTES: usize = 16 * 1024 * 1024;
/// Longest an OpenAI-compatible request may take, in milliseconds.
pub const OPENAI_TIMEOUT_MS: u64 = 120_000;
/// Dimensions of the demo embedding.
pub const DEMO_EMBEDDING_DIMS: usize = 64;
/// Side of the demo image, in pixels.
pub const DEMO_IMAGE_SIDE_PX: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("unknown backend {0:?}: use demo, openai:<url>[#model] or command:<program> [args]")]
    Unknown(String),
    #[error("the demo backend has no service {0:?}")]
    NoSuchDemo(String),
    #[error("backend failed: {0}")]
    Failed(String),
    #[error("backend output of {0} bytes is over the limit of {MAX_OUTPUT_BYTES}")]
    TooLarge(usize),
}

/// Runs services.
pub enum Backend {
    Demo,
    OpenAi { base: String, model: String },
    Command { program: String, args: Vec<String> },
}

impl Backend {
    pub fn parse(spec: &str) -> Result<Backend, BackendError> {
        if spec == "demo" {
            return Ok(Backend::Demo);
        }
        if let Some(rest) = spec.strip_prefix("openai:") {
            let (base, model) = rest.split_once('#').unwrap_or((rest, "default"));
            return Ok(Backend::OpenAi { base: base.trim_end_matches('/').to_string(), model: model.to_string() });
        }
        if let Some(rest) = spec.strip_prefix("command:") {
            let mut parts = rest.split_whitespace().map(str::to_string);
            let program = parts.next().ok_or_else(|| BackendError::Unknown(spec.into()))?;
            return Ok(Backend::Command { program, args: parts.collect() });
        }
        Err(BackendError::Unknown(spec.into()))
    }

    /// Runs `service` on `payload`.
    pub fn run(&self, service: &str, payload: &[u8]) -> Result<Vec<u8>, BackendError> {
        let output = match self {
            Backend::Demo => demo(service, payload)?,
            Backend::OpenAi { base, model } => openai(base, model, service, payload)?,
            Backend::Command { program, args } => command(program, args, payload)?,
        };
        if output.len() > MAX_OUTPUT_BYTES {
            return Err(BackendError::TooLarge(output.len()));
        }
        Ok(output)
    }
}

fn demo(service: &str, payload: &[u8]) -> Result<Vec<u8>, BackendError> {
    let text = String::from_utf8_lossy(payload);
    match service {
        "text-generation" => {
            let words: Vec<&str> = text.split_whitespace().collect();
            let reversed: Vec<&str> = words.iter().rev().copied().collect();
            Ok(format!("{} ({} words; demo service)", reversed.join(" "), words.len()).into_bytes())
        }
        "text-embedding" => {
            let mut vector = [0f64; DEMO_EMBEDDING_DIMS];
            for word in text.split_whitespace() {
                let h = blake3::hash(word.to_lowercase().as_bytes());
                let bytes = h.as_bytes();
                let slot = usize::from(bytes[0]) % DEMO_EMBEDDING_DIMS;
                vector[slot] += if bytes[1] & 1 == 0 { 1.0 } else { -1.0 };
            }
            let norm = vector.iter().map(|v| v * v).sum::<f64>().sqrt();
            let values: Vec<String> =
                vector.iter().map(|v| format!("{:.6}", if norm > 0.0 { v / norm } else { 0.0 })).collect();
            Ok(format!("[{}]", values.join(",")).into_bytes())
        }
        "image-generation" => {
            let mut image = format!("P5\n{DEMO_IMAGE_SIDE_PX} {DEMO_IMAGE_SIDE_PX}\n255\n").into_bytes();
            let mut reader = blake3::Hasher::new().update(payload).finalize_xof();
            let mut pixels = vec![0u8; DEMO_IMAGE_SIDE_PX * DEMO_IMAGE_SIDE_PX];
            reader.fill(&mut pixels);
            image.extend(pixels);
            Ok(image)
        }
        other => Err(BackendError::NoSuchDemo(other.into())),
    }
}

fn openai(base: &str, model: &str, service: &str, payload: &[u8]) -> Result<Vec<u8>, BackendError> {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_millis(OPENAI_TIMEOUT_MS))).build().into();
    let prompt = String::from_utf8_lossy(payload).to_string();
    let fail = |e: ureq::Error| BackendError::Failed(e.to_string());
    if service == "text-embedding" {
        let body = serde_json::json!({ "model": model, "input": prompt });
        let mut r = agent.post(&format!("{base}/v1/embeddings")).send_json(body).map_err(fail)?;
        let answer: serde_json::Value = r.body_mut().read_json().map_err(fail)?;
        return Ok(answer["data"][0]["embedding"].to_string().into_bytes());
    }
    let body = serde_json::json!({ "model": model, "messages": [{ "role": "user", "content": prompt }] });
    let mut r = agent.post(&format!("{base}/v1/chat/completions")).send_json(body).map_err(fail)?;
    let answer: serde_json::Value = r.body_mut().read_json().map_err(fail)?;
    answer["choices"][0]["message"]["content"]
        .as_str()
        .map(|s| s.as_bytes().to_vec())
        .ok_or_else(|| BackendError::Failed(format!("no completion in the answer: {answer}")))
}

fn command(program: &str, args: &[String], payload: &[u8]) -> Result<Vec<u8>, BackendError> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| BackendError::Failed(format!("cannot start {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(payload).map_err(|e| BackendError::Failed(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| BackendError::Failed(e.to_string()))?;
    if !out.status.success() {
        return Err(BackendError::Failed(format!("{program} exited with {}", out.status)));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_services_are_deterministic_and_say_what_they_are() {
        let out = Backend::Demo.run("text-generation", b"an old silent pond").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "pond silent old an (4 words; demo service)");
        let a = Backend::Demo.run("text-embedding", b"hello world").unwrap();
        assert_eq!(a, Backend::Demo.run("text-embedding", b"Hello  world").unwrap());
        let text = String::from_utf8(a).unwrap();
        let values: Vec<f64> = text.trim_matches(['[', ']']).split(',').map(|v| v.parse().unwrap()).collect();
        assert_eq!(values.len(), DEMO_EMBEDDING_DIMS);
        assert!((values.iter().map(|v| v * v).sum::<f64>() - 1.0).abs() < 1e-5, "unit length");
        let image = Backend::Demo.run("image-generation", b"a cat").unwrap();
        assert!(image.starts_with(b"P5\n32 32\n255\n"));
        assert_eq!(image.len(), 13 + DEMO_IMAGE_SIDE_PX * DEMO_IMAGE_SIDE_PX);
        assert!(matches!(Backend::Demo.run("video", b"x"), Err(BackendError::NoSuchDemo(_))));
    }

    #[test]
    fn backends_parse_and_a_command_backend_pipes_through() {
        assert!(
            matches!(Backend::parse("openai:http://h:1/#m"), Ok(Backend::OpenAi { ref model, .. }) if model == "m")
        );
        assert!(Backend::parse("nonsense").is_err());
        let cat = Backend::parse("command:cat").unwrap();
        assert_eq!(cat.run("text-generation", b"echoed").unwrap(), b"echoed");
        let failing = Backend::parse("command:false").unwrap();
        assert!(matches!(failing.run("x", b""), Err(BackendError::Failed(_))));
    }
}
