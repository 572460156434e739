//! The one error type for input that breaks a rule of the domain.

use std::borrow::Cow;

/// Input that breaks a rule: which field, what is wrong, and how to fix it.
///
/// The API maps it to a 422 with `{code: "invalid_input", message, hint}`; the CLI prints it as
/// it is. `Display` prints the field and the message, never the value of a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidInput {
    field: Cow<'static, str>,
    message: String,
    hint: String,
}

impl InvalidInput {
    /// A rule broken by `field` (a JSON path such as `objects.databases[0].name`).
    pub fn new(
        field: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// The same error, reported under a longer path: `at("objects")` turns `databases[0].name`
    /// into `objects.databases[0].name`.
    #[must_use]
    pub fn at(self, parent: &str) -> Self {
        let field = if self.field.is_empty() {
            Cow::Owned(parent.to_owned())
        } else if self.field.starts_with('[') {
            Cow::Owned(format!("{parent}{}", self.field))
        } else {
            Cow::Owned(format!("{parent}.{}", self.field))
        };
        Self { field, ..self }
    }

    pub fn field(&self) -> &str {
        &self.field
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn hint(&self) -> &str {
        &self.hint
    }
}

/// Checks a free-text field: trimmed length within bounds and no control characters.
pub(crate) fn check_text(
    field: &'static str,
    value: &str,
    max_chars: usize,
) -> Result<(), InvalidInput> {
    let chars = value.chars().count();
    if value.trim().is_empty() {
        return Err(InvalidInput::new(
            field,
            "must not be empty",
            format!("give a {field} of 1 to {max_chars} characters"),
        ));
    }
    if chars > max_chars {
        return Err(InvalidInput::new(
            field,
            format!("is {chars} characters long, more than the {max_chars} allowed"),
            format!("shorten the {field} to at most {max_chars} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidInput::new(
            field,
            "contains a control character",
            format!("remove tabs, newlines and other control characters from the {field}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_prefixes_paths_and_indexes() {
        let e = InvalidInput::new("name", "bad", "fix it");
        assert_eq!(e.clone().at("databases[0]").field(), "databases[0].name");
        let e = InvalidInput::new("[2]", "bad", "fix it");
        assert_eq!(e.at("columns").field(), "columns[2]");
    }

    #[test]
    fn check_text_rules() {
        assert!(check_text("name", "orders", 64).is_ok());
        assert_eq!(
            check_text("name", "  ", 64).unwrap_err().message(),
            "must not be empty"
        );
        assert!(check_text("name", &"x".repeat(65), 64).is_err());
        assert!(check_text("name", "a\nb", 64).is_err());
        // Length counts characters, not bytes.
        assert!(check_text("name", &"é".repeat(64), 64).is_ok());
    }
}
