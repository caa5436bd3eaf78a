//! Output for `pilotctl`: the v0.5 `--json` envelope, human text, error codes and exit codes.
//!
//! Success with `--json`: one line on stdout, `{"data":{...},"status":"ok"}`. Failure with
//! `--json`: one line on stderr, `{"code":..,"hint":..,"message":..,"status":"error"}`. Without
//! `--json`: human text on stdout, `error: <message>` (and `hint: <hint>`) on stderr.

use serde_json::{Value, json};

use crate::client::ClientError;

/// A failed command: a v0.5 error code, a message and an optional hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// One of the v0.5 codes (`invalid_argument`, `not_found`, `not_running`, ...).
    pub code: &'static str,
    /// What went wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl CliError {
    /// An error with a code and message.
    pub fn new(code: &'static str, message: impl Into<String>) -> CliError {
        CliError {
            code,
            message: message.into(),
            hint: None,
        }
    }

    /// Bad user input.
    pub fn invalid(message: impl Into<String>) -> CliError {
        CliError::new("invalid_argument", message)
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> CliError {
        self.hint = Some(hint.into());
        self
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self.code {
            "invalid_argument" => 2,
            "not_running" => 3,
            "not_found" => 4,
            "timeout" => 5,
            "already_exists" => 6,
            "unavailable" => 7,
            _ => 1,
        }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> CliError {
        match e {
            ClientError::NotRunning(_) => CliError::new("not_running", "daemon is not running")
                .hint("start the daemon with: pilotctl daemon start"),
            ClientError::Daemon(text)
                if text.contains("not supported") || text.contains("not available") =>
            {
                CliError::new("unavailable", text)
            }
            other => CliError::new("connection_failed", other.to_string()),
        }
    }
}

/// Where command results go.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    /// Machine output.
    pub json: bool,
}

impl Out {
    /// Prints a success: the envelope in JSON mode, `human` text otherwise.
    pub fn ok(&self, data: Value, human: impl FnOnce(&Value) -> String) {
        if self.json {
            println!("{}", json!({"data": data, "status": "ok"}));
        } else {
            let text = human(&data);
            if !text.is_empty() {
                println!("{text}");
            }
        }
    }

    /// Prints a success as indented JSON in human mode (the v0.5 default for most commands).
    pub fn ok_data(&self, data: Value) {
        self.ok(data, |d| {
            serde_json::to_string_pretty(d).unwrap_or_default()
        });
    }

    /// Prints a failure to stderr.
    pub fn error(&self, e: &CliError) {
        if self.json {
            let mut v = json!({"code": e.code, "message": e.message, "status": "error"});
            if let Some(h) = &e.hint {
                v["hint"] = h.clone().into();
            }
            eprintln!("{v}");
        } else {
            eprintln!("error: {}", e.message);
            if let Some(h) = &e.hint {
                eprintln!("hint:  {h}");
            }
        }
    }

    /// A progress or status line for humans (stderr; silent in JSON mode).
    pub fn note(&self, text: impl AsRef<str>) {
        if !self.json {
            eprintln!("{}", text.as_ref());
        }
    }
}

/// Parses a duration: Go syntax (`10s`, `1m30s`, `500ms`) or plain seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    if let Ok(secs) = text.parse::<f64>() {
        return if secs >= 0.0 && secs.is_finite() {
            Ok(std::time::Duration::from_secs_f64(secs))
        } else {
            Err(format!("invalid duration {text:?}"))
        };
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("invalid duration {text:?}"))?;
        let (num, tail) = rest.split_at(split);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("invalid duration {text:?}"))?;
        total += n * match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("invalid duration {text:?} (units: ms, s, m, h)")),
        };
        rest = next;
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").expect("ok").as_secs(), 10);
        assert_eq!(parse_duration("1m30s").expect("ok").as_secs(), 90);
        assert_eq!(parse_duration("500ms").expect("ok").as_millis(), 500);
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn exit_codes_are_distinct() {
        assert_eq!(CliError::new("not_running", "x").exit_code(), 3);
        assert_eq!(CliError::invalid("x").exit_code(), 2);
        assert_eq!(CliError::new("connection_failed", "x").exit_code(), 1);
    }
}
