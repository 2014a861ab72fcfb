//! The three kinds of text ordo takes, as checks and as the patterns the OpenAPI document
//! states, so that the document and the server agree on every string.

use crate::error::{Error, Result};

/// One line: no control characters, at least one character that is not a space
/// (product names, carriers).
pub const LINE_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$";
/// A code: no spaces, no control characters (SKUs).
pub const CODE_PATTERN: &str = r"^[^\s\u0000-\u001F\u007F-\u009F]+$";
/// Free text: newlines and tabs allowed, no other control characters (notes, reasons).
pub const FREE_PATTERN: &str = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$";

fn too_long(field: &str, value: &str, max_chars: usize) -> Result<()> {
    if value.chars().count() > max_chars {
        return Err(Error::validation(
            field,
            format!("at most {max_chars} characters"),
        ));
    }
    Ok(())
}

/// A line of text ([`LINE_PATTERN`]), at most `max_chars`.
pub fn check_line(field: &str, value: &str, max_chars: usize) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::validation(field, "required; must not be blank"));
    }
    too_long(field, value, max_chars)?;
    if value.chars().any(char::is_control) {
        return Err(Error::validation(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// A code ([`CODE_PATTERN`]), at most `max_chars`.
pub fn check_code(field: &str, value: &str, max_chars: usize) -> Result<()> {
    check_line(field, value, max_chars)?;
    if value.chars().any(char::is_whitespace) {
        return Err(Error::validation(field, "must not contain spaces"));
    }
    Ok(())
}

/// Free text ([`FREE_PATTERN`]), at most `max_chars`; PostgreSQL cannot store NUL in text,
/// and terminals and CSV readers trip on other control characters.
pub fn check_free(field: &str, value: &str, max_chars: usize) -> Result<()> {
    too_long(field, value, max_chars)?;
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(Error::validation(
            field,
            "must not contain control characters (newlines and tabs are fine)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_text() {
        assert!(check_line("name", "Mug", 10).is_ok());
        assert!(check_line("name", "  ", 10).is_err());
        assert!(check_line("name", "a\nb", 10).is_err());
        assert!(check_line("name", "\u{85}", 10).is_err());
        assert!(check_line("name", "0123456789x", 10).is_err());
        assert!(check_line("name", "杯子", 2).is_ok());
        assert!(check_code("sku", "MUG-1", 10).is_ok());
        assert!(check_code("sku", "MUG 1", 10).is_err());
        assert!(check_free("note", "line\nline\ttab", 20).is_ok());
        assert!(check_free("note", "", 20).is_ok());
        assert!(check_free("note", "nul\0", 20).is_err());
    }
}
