//! Where an order ships to, and who a customer is: the shipping address given at placement
//! (checked field by field, every error naming `shipping_address.<field>`), kept on the
//! order as it was given; phone numbers and WeChat openids as ordo takes them.

use super::text::check_line;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// ISO 3166-1 alpha-2: every officially assigned code.
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI \
BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ \
DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ \
GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN \
KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS \
MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT \
PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF \
TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM \
ZW";

/// Whether `code` is an assigned ISO 3166-1 alpha-2 code (upper case).
pub fn is_country(code: &str) -> bool {
    code.len() == 2 && COUNTRIES.split(' ').any(|c| c == code)
}

/// Most characters of a name, a province, a city, a district or a town.
pub const MAX_PART: usize = 50;
/// Most characters of the street line.
pub const MAX_LINE: usize = 200;

/// A phone number's characters: digits, spaces, `-`, `(`, `)`, and `+` first; 5 to 20
/// characters with at least 5 digits (`+86 138 0013 8000`, `021-6123 4567`).
pub const PHONE_PATTERN: &str = r"^\+?[0-9 ()-]{5,20}$";

/// Checks a phone number ([`PHONE_PATTERN`]); returns it trimmed.
pub fn check_phone(field: &str, phone: &str) -> Result<String> {
    let phone = phone.trim();
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    let body = phone.strip_prefix('+').unwrap_or(phone);
    let len = phone.chars().count();
    if !(5..=20).contains(&len) {
        return Err(Error::validation(field, "5 to 20 characters"));
    }
    if !body
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '(' | ')'))
    {
        return Err(Error::validation(
            field,
            "digits, spaces, '-', '(' and ')' only, with '+' allowed first",
        ));
    }
    if digits < 5 {
        return Err(Error::validation(field, "at least 5 digits"));
    }
    Ok(phone.to_owned())
}

/// A WeChat openid: 1 to 128 letters, digits, `_` and `-`.
pub fn check_openid(field: &str, openid: &str) -> Result<()> {
    if openid.is_empty()
        || openid.len() > 128
        || !openid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(Error::validation(
            field,
            "1 to 128 letters, digits, '_' and '-'",
        ));
    }
    Ok(())
}

/// A shipping address as a request gives it. Every field is checked by
/// [`NewShippingAddress::validated`], which names the one at fault.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewShippingAddress {
    /// Who receives the parcel.
    #[schema(min_length = 1, max_length = 50, example = "王小明")]
    pub name: String,
    #[schema(pattern = "^\\+?[0-9 ()-]{5,20}$", example = "138 0013 8000")]
    pub phone: String,
    /// ISO 3166-1 alpha-2; default `CN`.
    #[schema(pattern = "^[A-Za-z]{2}$", example = "CN")]
    pub country: Option<String>,
    /// Required in China (`country` `CN`).
    #[schema(max_length = 50, example = "上海市")]
    pub province: Option<String>,
    /// Required in China.
    #[schema(max_length = 50, example = "上海市")]
    pub city: Option<String>,
    #[schema(max_length = 50, example = "浦东新区")]
    pub district: Option<String>,
    #[schema(max_length = 50, example = "陆家嘴街道")]
    pub town: Option<String>,
    /// Street, number, building, floor, room.
    #[schema(min_length = 1, max_length = 200, example = "世纪大道 100 号 12 楼")]
    pub line: String,
    /// Six digits in China.
    #[schema(max_length = 16, example = "200120")]
    pub postal_code: Option<String>,
}

/// A shipping address as an order keeps it: what was given when the order was placed (or
/// corrected by staff before it shipped). After a personal-data erasure its fields are
/// empty and `erased` is true.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShippingAddress {
    pub name: String,
    pub phone: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    pub province: Option<String>,
    pub city: Option<String>,
    pub district: Option<String>,
    pub town: Option<String>,
    pub line: String,
    pub postal_code: Option<String>,
    /// The customer's personal data was erased: only the country is left.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub erased: bool,
}

impl ShippingAddress {
    /// What an erased address keeps: its country.
    pub fn erased(&self) -> ShippingAddress {
        ShippingAddress {
            name: String::new(),
            phone: String::new(),
            country: self.country.clone(),
            province: None,
            city: None,
            district: None,
            town: None,
            line: String::new(),
            postal_code: None,
            erased: true,
        }
    }

    /// The address as JSON text, as the orders table stores it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The lines a parcel's label shows, region first as Chinese addresses are written
    /// (province, city, district, town, street), then the postal code and the country when
    /// it is not China.
    pub fn label_lines(&self) -> Vec<String> {
        let region: String = [&self.province, &self.city, &self.district, &self.town]
            .into_iter()
            .flatten()
            .fold(Vec::<&str>::new(), |mut parts, p| {
                // "上海市 上海市": a municipality is its own province.
                if parts.last() != Some(&p.as_str()) {
                    parts.push(p);
                }
                parts
            })
            .join(" ");
        let mut lines = Vec::new();
        if !region.is_empty() {
            lines.push(region);
        }
        if !self.line.is_empty() {
            lines.push(self.line.clone());
        }
        let mut last = Vec::new();
        if let Some(code) = &self.postal_code {
            last.push(code.clone());
        }
        if self.country != "CN" {
            last.push(self.country.clone());
        }
        if !last.is_empty() {
            lines.push(last.join(" "));
        }
        lines
    }

    /// Which fields differ from `other` (for the audit log, which keeps no personal data).
    pub fn changed_fields(&self, other: Option<&ShippingAddress>) -> Vec<&'static str> {
        let Some(other) = other else {
            return vec!["all"];
        };
        let mut changed = Vec::new();
        let pairs: [(&'static str, bool); 9] = [
            ("name", self.name != other.name),
            ("phone", self.phone != other.phone),
            ("country", self.country != other.country),
            ("province", self.province != other.province),
            ("city", self.city != other.city),
            ("district", self.district != other.district),
            ("town", self.town != other.town),
            ("line", self.line != other.line),
            ("postal_code", self.postal_code != other.postal_code),
        ];
        for (name, differs) in pairs {
            if differs {
                changed.push(name);
            }
        }
        changed
    }
}

/// `prefix.name`, or `name` alone without a prefix.
fn field_name(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

fn part(prefix: &str, name: &str, value: &Option<String>, max: usize) -> Result<Option<String>> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => {
            check_line(&field_name(prefix, name), v, max)?;
            Ok(Some(v.to_owned()))
        }
    }
}

impl NewShippingAddress {
    /// Checks every field (`prefix` names the object in errors, such as
    /// `shipping_address`; empty when the address is the whole body), trims them, and fills
    /// the default country.
    pub fn validated(&self, prefix: &str) -> Result<ShippingAddress> {
        let field = |name: &str| field_name(prefix, name);
        check_line(&field("name"), self.name.trim(), MAX_PART)?;
        let phone = check_phone(&field("phone"), &self.phone)?;
        let country = match self.country.as_deref().map(str::trim) {
            None | Some("") => "CN".to_owned(),
            Some(code) => {
                let upper = code.to_ascii_uppercase();
                if !is_country(&upper) {
                    return Err(Error::validation(
                        field("country"),
                        format!("{code:?} is not an ISO 3166-1 alpha-2 country code, such as CN"),
                    ));
                }
                upper
            }
        };
        let province = part(prefix, "province", &self.province, MAX_PART)?;
        let city = part(prefix, "city", &self.city, MAX_PART)?;
        let district = part(prefix, "district", &self.district, MAX_PART)?;
        let town = part(prefix, "town", &self.town, MAX_PART)?;
        check_line(&field("line"), self.line.trim(), MAX_LINE)?;
        let postal_code = match self.postal_code.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(code) => {
                if code.len() > 16
                    || !code
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-')
                {
                    return Err(Error::validation(
                        field("postal_code"),
                        "at most 16 letters, digits, spaces and '-'",
                    ));
                }
                if country == "CN" && !(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()))
                {
                    return Err(Error::validation(
                        field("postal_code"),
                        "a Chinese postal code is six digits, such as 200120",
                    ));
                }
                Some(code.to_owned())
            }
        };
        if country == "CN" {
            if province.is_none() {
                return Err(Error::validation(
                    field("province"),
                    "required for an address in China",
                ));
            }
            if city.is_none() {
                return Err(Error::validation(
                    field("city"),
                    "required for an address in China",
                ));
            }
        }
        Ok(ShippingAddress {
            name: self.name.trim().to_owned(),
            phone,
            country,
            province,
            city,
            district,
            town,
            line: self.line.trim().to_owned(),
            postal_code,
            erased: false,
        })
    }
}

/// The masked form of a phone number WeChat's shipping upload takes as a contact
/// (`138****8000`): the first three and the last four digits.
pub fn masked_phone(phone: &str) -> String {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    // Chinese mobile numbers written with the country code.
    let digits = digits
        .strip_prefix("86")
        .filter(|rest| rest.len() == 11)
        .unwrap_or(&digits);
    if digits.len() < 8 {
        return "*".repeat(digits.len());
    }
    format!("{}****{}", &digits[..3], &digits[digits.len() - 4..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> NewShippingAddress {
        NewShippingAddress {
            name: "王小明".into(),
            phone: "+86 138 0013 8000".into(),
            country: None,
            province: Some("上海市".into()),
            city: Some("上海市".into()),
            district: Some("浦东新区".into()),
            town: None,
            line: "世纪大道 100 号".into(),
            postal_code: Some("200120".into()),
        }
    }

    #[test]
    fn a_good_address_is_kept_as_given() {
        let a = good().validated("shipping_address").unwrap();
        assert_eq!(a.country, "CN");
        assert_eq!(a.phone, "+86 138 0013 8000");
        assert_eq!(
            a.label_lines(),
            vec!["上海市 浦东新区", "世纪大道 100 号", "200120"]
        );
        let round: ShippingAddress = serde_json::from_str(&a.to_json()).unwrap();
        assert_eq!(round, a);
    }

    #[test]
    fn every_bad_field_is_named() {
        type Bad = fn(&mut NewShippingAddress);
        let cases: [(Bad, &str); 13] = [
            (|a| a.name = " ".into(), "name"),
            (|a| a.name = "x".repeat(51), "name"),
            (|a| a.phone = "12ab5678".into(), "phone"),
            (|a| a.phone = "1234".into(), "phone"),
            (|a| a.phone = "1-2-3-4".into(), "phone"),
            (|a| a.country = Some("XX".into()), "country"),
            (|a| a.province = None, "province"),
            (|a| a.city = Some("a\nb".into()), "city"),
            (|a| a.district = Some("x".repeat(51)), "district"),
            (|a| a.town = Some("\u{7}".into()), "town"),
            (|a| a.line = String::new(), "line"),
            (|a| a.postal_code = Some("2001".into()), "postal_code"),
            (|a| a.postal_code = Some("2001<0".into()), "postal_code"),
        ];
        for (spoil, name) in cases {
            let mut a = good();
            spoil(&mut a);
            match a.validated("shipping_address") {
                Err(Error::Validation { field, .. }) => {
                    assert_eq!(field, format!("shipping_address.{name}"))
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        let mut abroad = good();
        abroad.country = Some("gb".into());
        abroad.province = None;
        abroad.postal_code = Some("SW1A 1AA".into());
        let a = abroad.validated("shipping_address").unwrap();
        assert_eq!(a.country, "GB");
    }

    #[test]
    fn phones_are_masked_for_wechat() {
        assert_eq!(masked_phone("+86 138 0013 8000"), "138****8000");
        assert_eq!(masked_phone("021-6123 4567"), "021****4567");
        assert_eq!(masked_phone("12345"), "*****");
        assert!(is_country("CN") && is_country("ZW") && !is_country("XX"));
    }
}
