//! SQL92 property filters (subscriptions with expressionType `SQL92`): a hand-written parser
//! and evaluator of RocketMQ's selector grammar over a message's properties (user properties
//! plus `TAGS`, `KEYS`, ...).
//!
//! Grammar, keywords case-insensitive, lowest precedence first:
//! `or := and (OR and)*`, `and := equality (AND equality)*`,
//! `equality := comparison (= comparison | <> comparison | IS [NOT] NULL)*`,
//! `comparison := unary (> | >= | < | <= unary | [NOT] BETWEEN unary AND unary |
//! [NOT] IN ('s', ...) | [NOT] CONTAINS|STARTSWITH|ENDSWITH 's')*`,
//! `unary := + unary | - unary | NOT unary | 'string' | integer | decimal | TRUE | FALSE | NULL |
//! identifier | ( or )`; `--` and `/* */` comments are skipped.
//!
//! Invariants, following RocketMQ's semantics:
//! - evaluation is three-valued: a missing property makes a comparison unknown, `AND`/`OR`/`NOT`
//!   follow SQL, and a message matches only when the whole expression is TRUE;
//! - properties are strings: compared with a number they are read as that number, with a
//!   boolean as `true` (any case) or not; an ordering of two strings reads both as decimals; a
//!   string that cannot be read so makes the whole evaluation fail (no match);
//! - what RocketMQ refuses when compiling is refused here too ([`FilterError`]): ordering a
//!   string, boolean or NULL literal, `= NULL`, `IN` on a non-property, `BETWEEN` bounds out of
//!   order, a non-boolean top-level expression; the parser recurses at most [`MAX_DEPTH`] deep
//!   and reads at most [`MAX_OPERANDS`] operands, so the tree that evaluation and drop recurse
//!   over stays shallow even for a long flat chain (`a = 1 OR a = 1 OR ...`).

use std::cmp::Ordering;

/// Nesting (parentheses, NOT, signs) a filter may use; deeper input is refused, not recursed.
const MAX_DEPTH: usize = 64;
/// Operands (literals, properties, unary operators) a filter may hold; a flat chain of
/// operators builds a tree as deep as it is long, so length is bounded like nesting.
const MAX_OPERANDS: usize = 256;

/// Why a SQL92 expression does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("Invalid MessageSelector. unexpected {found} at character {at}")]
    Unexpected { found: String, at: usize },
    #[error("Invalid MessageSelector. {0}")]
    Invalid(String),
}

/// A literal value, or what an expression evaluates to.
#[derive(Debug, Clone, PartialEq)]
enum Value<'a> {
    Null,
    Bool(bool),
    Long(i64),
    Double(f64),
    Str(&'a str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compare {
    Equal,
    Greater,
    GreaterEqual,
    Less,
    LessEqual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextTest {
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Null,
    Bool(bool),
    Long(i64),
    Double(f64),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Literal(Literal),
    Property(String),
    Negate(Box<Expr>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare(Compare, Box<Expr>, Box<Expr>),
    In {
        property: String,
        values: Vec<String>,
        negated: bool,
    },
    Text(TextTest, Box<Expr>, String),
    /// A property used as a condition: TRUE only when it reads as `true`.
    BooleanCast(Box<Expr>),
}

/// The evaluation hit a value it cannot convert; the message does not match.
struct Unconvertible;

type Evaluated<'a> = Result<Value<'a>, Unconvertible>;

/// A compiled SQL92 filter.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlFilter(Expr);

impl SqlFilter {
    pub fn compile(text: &str) -> Result<Self, FilterError> {
        let tokens = tokenize(text)?;
        let mut parser = Parser {
            tokens,
            pos: 0,
            depth: 0,
            operands: 0,
        };
        let expr = parser.or()?;
        if let Some((token, at)) = parser.tokens.get(parser.pos) {
            return Err(FilterError::Unexpected {
                found: token.describe(),
                at: *at,
            });
        }
        Ok(Self(as_condition(expr)?))
    }

    /// Whether a message whose properties `property` looks up matches.
    pub fn matches<'a>(&'a self, property: impl Fn(&str) -> Option<&'a str>) -> bool {
        matches!(evaluate(&self.0, &property), Ok(Value::Bool(true)))
    }
}

fn evaluate<'a>(expr: &'a Expr, property: &impl Fn(&str) -> Option<&'a str>) -> Evaluated<'a> {
    Ok(match expr {
        Expr::Literal(literal) => literal_value(literal),
        Expr::Property(name) => property(name).map_or(Value::Null, Value::Str),
        Expr::Negate(inner) => match evaluate(inner, property)? {
            Value::Long(n) => Value::Long(n.wrapping_neg()),
            Value::Double(d) => Value::Double(-d),
            _ => Value::Null,
        },
        Expr::Not(inner) => match evaluate(inner, property)? {
            Value::Bool(b) => Value::Bool(!b),
            _ => Value::Null,
        },
        Expr::And(left, right) => {
            let left = evaluate(left, property)?;
            if left == Value::Bool(false) {
                return Ok(left);
            }
            match evaluate(right, property)? {
                Value::Bool(false) => Value::Bool(false),
                Value::Bool(true) if left == Value::Bool(true) => Value::Bool(true),
                _ => Value::Null,
            }
        }
        Expr::Or(left, right) => {
            let left = evaluate(left, property)?;
            if left == Value::Bool(true) {
                return Ok(left);
            }
            match evaluate(right, property)? {
                Value::Bool(true) => Value::Bool(true),
                Value::Bool(false) if left == Value::Bool(false) => Value::Bool(false),
                _ => Value::Null,
            }
        }
        Expr::Compare(op, left, right) => {
            let (left, right) = (evaluate(left, property)?, evaluate(right, property)?);
            compare(*op, &left, &right)?
        }
        Expr::In {
            property: name,
            values,
            negated,
        } => match property(name) {
            None => Value::Null,
            Some(value) => Value::Bool(values.iter().any(|v| v == value) != *negated),
        },
        Expr::Text(test, inner, pattern) => match evaluate(inner, property)? {
            Value::Str(text) => Value::Bool(match test {
                TextTest::Contains => text.contains(pattern.as_str()),
                TextTest::StartsWith => text.starts_with(pattern.as_str()),
                TextTest::EndsWith => text.ends_with(pattern.as_str()),
            }),
            Value::Null => Value::Null,
            _ => Value::Bool(false),
        },
        Expr::BooleanCast(inner) => match evaluate(inner, property)? {
            Value::Null => Value::Null,
            Value::Str(text) => Value::Bool(text.eq_ignore_ascii_case("true")),
            Value::Bool(b) => Value::Bool(b),
            _ => Value::Bool(false),
        },
    })
}

fn compare<'a>(op: Compare, left: &Value<'a>, right: &Value<'a>) -> Evaluated<'a> {
    if op == Compare::Equal {
        return Ok(match (left, right) {
            (Value::Null, Value::Null) => Value::Bool(true),
            (Value::Null, _) => Value::Null,
            (_, Value::Null) => Value::Bool(false),
            _ => Value::Bool(order(left, right)? == Some(Ordering::Equal)),
        });
    }
    if matches!(left, Value::Null) || matches!(right, Value::Null) {
        return Ok(Value::Null);
    }
    let ordering = match (left, right) {
        // Two strings are ordered as decimals, as RocketMQ does.
        (Value::Str(l), Value::Str(r)) => parse_double(l)?.partial_cmp(&parse_double(r)?),
        _ => order(left, right)?,
    };
    Ok(match ordering {
        None => Value::Bool(false),
        Some(ordering) => Value::Bool(match op {
            Compare::Greater => ordering == Ordering::Greater,
            Compare::GreaterEqual => ordering != Ordering::Less,
            Compare::Less => ordering == Ordering::Less,
            Compare::LessEqual => ordering != Ordering::Greater,
            Compare::Equal => ordering == Ordering::Equal,
        }),
    })
}

/// Orders two non-null values, converting a string to the other side's type; `None` when the
/// types cannot be compared (a boolean with a number).
fn order(left: &Value<'_>, right: &Value<'_>) -> Result<Option<Ordering>, Unconvertible> {
    Ok(match (left, right) {
        (Value::Str(l), Value::Str(r)) => Some(l.cmp(r)),
        (Value::Bool(l), Value::Bool(r)) => Some(l.cmp(r)),
        (Value::Str(s), Value::Bool(b)) => Some(s.eq_ignore_ascii_case("true").cmp(b)),
        (Value::Bool(b), Value::Str(s)) => Some(b.cmp(&s.eq_ignore_ascii_case("true"))),
        (Value::Long(l), Value::Long(r)) => Some(l.cmp(r)),
        (Value::Str(s), Value::Long(r)) => Some(parse_long(s)?.cmp(r)),
        (Value::Long(l), Value::Str(s)) => Some(l.cmp(&parse_long(s)?)),
        (Value::Str(s), Value::Double(r)) => parse_double(s)?.partial_cmp(r),
        (Value::Double(l), Value::Str(s)) => l.partial_cmp(&parse_double(s)?),
        (Value::Long(l), Value::Double(r)) => (*l as f64).partial_cmp(r),
        (Value::Double(l), Value::Long(r)) => l.partial_cmp(&(*r as f64)),
        (Value::Double(l), Value::Double(r)) => l.partial_cmp(r),
        _ => None,
    })
}

fn parse_long(text: &str) -> Result<i64, Unconvertible> {
    text.parse().map_err(|_| Unconvertible)
}

fn parse_double(text: &str) -> Result<f64, Unconvertible> {
    text.trim().parse().map_err(|_| Unconvertible)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Long(i64),
    Double(f64),
    Symbol(&'static str),
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Self::Word(word) => format!("\"{word}\""),
            Self::Str(text) => format!("'{text}'"),
            Self::Long(n) => n.to_string(),
            Self::Double(d) => d.to_string(),
            Self::Symbol(symbol) => format!("\"{symbol}\""),
        }
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(self, Self::Word(word) if word.eq_ignore_ascii_case(keyword))
    }
}

const SYMBOLS: [&str; 11] = ["<>", ">=", "<=", "=", ">", "<", "(", ")", ",", "+", "-"];
const KEYWORDS: [&str; 13] = [
    "NOT",
    "AND",
    "OR",
    "BETWEEN",
    "IN",
    "TRUE",
    "FALSE",
    "NULL",
    "IS",
    "CONTAINS",
    "STARTSWITH",
    "ENDSWITH",
    "LIKE",
];

fn tokenize(text: &str) -> Result<Vec<(Token, usize)>, FilterError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let start = pos;
        let byte = bytes[pos];
        if byte.is_ascii_whitespace() {
            pos += 1;
        } else if text[pos..].starts_with("--") {
            pos = text[pos..].find('\n').map_or(bytes.len(), |end| pos + end);
        } else if text[pos..].starts_with("/*") {
            let end = text[pos + 2..].find("*/").ok_or_else(|| {
                FilterError::Invalid(format!("unterminated comment at character {start}"))
            })?;
            pos += 2 + end + 2;
        } else if byte == b'\'' {
            let mut value = String::new();
            pos += 1;
            loop {
                let Some(offset) = text[pos..].find('\'') else {
                    return Err(FilterError::Invalid(format!(
                        "unterminated string at character {start}"
                    )));
                };
                value.push_str(&text[pos..pos + offset]);
                pos += offset + 1;
                // Two quotes stand for one inside a literal.
                if bytes.get(pos) == Some(&b'\'') {
                    value.push('\'');
                    pos += 1;
                } else {
                    break;
                }
            }
            tokens.push((Token::Str(value), start));
        } else if byte.is_ascii_digit()
            || (byte == b'.' && bytes.get(pos + 1).is_some_and(u8::is_ascii_digit))
        {
            pos = number_end(bytes, pos);
            tokens.push((number_token(&text[start..pos], start)?, start));
        } else if byte.is_ascii_alphabetic() || byte == b'_' || byte == b'$' {
            while pos < bytes.len()
                && (bytes[pos].is_ascii_alphanumeric() || matches!(bytes[pos], b'_' | b'$'))
            {
                pos += 1;
            }
            tokens.push((Token::Word(text[start..pos].to_owned()), start));
        } else if let Some(symbol) = SYMBOLS.iter().find(|s| text[pos..].starts_with(*s)) {
            pos += symbol.len();
            tokens.push((Token::Symbol(symbol), start));
        } else {
            let found = text[pos..].chars().next().unwrap_or_default();
            return Err(FilterError::Unexpected {
                found: format!("\"{found}\""),
                at: start,
            });
        }
    }
    Ok(tokens)
}

/// The end of a numeric literal: digits, an optional fraction, exponent or `L` suffix.
fn number_end(bytes: &[u8], mut pos: usize) -> usize {
    let digits = |pos: &mut usize| {
        while bytes.get(*pos).is_some_and(u8::is_ascii_digit) {
            *pos += 1;
        }
    };
    digits(&mut pos);
    if bytes.get(pos) == Some(&b'.') {
        pos += 1;
        digits(&mut pos);
    }
    if matches!(bytes.get(pos), Some(b'e' | b'E')) {
        let mut exponent = pos + 1;
        if matches!(bytes.get(exponent), Some(b'+' | b'-')) {
            exponent += 1;
        }
        if bytes.get(exponent).is_some_and(u8::is_ascii_digit) {
            pos = exponent;
            digits(&mut pos);
        }
    } else if matches!(bytes.get(pos), Some(b'l' | b'L')) {
        pos += 1;
    }
    pos
}

fn number_token(text: &str, at: usize) -> Result<Token, FilterError> {
    let bad = || FilterError::Invalid(format!("bad number {text} at character {at}"));
    if text.contains(['.', 'e', 'E']) {
        return text.parse().map(Token::Double).map_err(|_| bad());
    }
    let digits = text.trim_end_matches(['l', 'L']);
    if digits.len() > 1 && digits.starts_with('0') {
        // RocketMQ has no octal literals.
        return Err(bad());
    }
    digits.parse().map(Token::Long).map_err(|_| bad())
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    pos: usize,
    depth: usize,
    operands: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(token, _)| token)
    }

    fn peek_keyword(&self, offset: usize, keyword: &str) -> bool {
        self.tokens
            .get(self.pos + offset)
            .is_some_and(|(token, _)| token.is_keyword(keyword))
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let found = self.peek_keyword(0, keyword);
        self.pos += usize::from(found);
        found
    }

    fn eat_symbol(&mut self, symbol: &str) -> bool {
        let found = matches!(self.peek(), Some(Token::Symbol(s)) if *s == symbol);
        self.pos += usize::from(found);
        found
    }

    fn unexpected(&self) -> FilterError {
        match self.tokens.get(self.pos) {
            Some((token, at)) => FilterError::Unexpected {
                found: token.describe(),
                at: *at,
            },
            None => FilterError::Invalid("unexpected end of the expression".to_owned()),
        }
    }

    fn expect_symbol(&mut self, symbol: &str) -> Result<(), FilterError> {
        if self.eat_symbol(symbol) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn string_literal(&mut self) -> Result<String, FilterError> {
        match self.peek() {
            Some(Token::Str(text)) => {
                let text = text.clone();
                self.pos += 1;
                Ok(text)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        self.logic("OR", Self::and, Expr::Or)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        self.logic("AND", Self::equality, Expr::And)
    }

    /// `operand (keyword operand)*`, left-associative, every operand a condition.
    fn logic(
        &mut self,
        keyword: &str,
        operand: fn(&mut Self) -> Result<Expr, FilterError>,
        combine: fn(Box<Expr>, Box<Expr>) -> Expr,
    ) -> Result<Expr, FilterError> {
        let mut left = operand(self)?;
        while self.eat_keyword(keyword) {
            let right = operand(self)?;
            left = combine(
                Box::new(as_condition(left)?),
                Box::new(as_condition(right)?),
            );
        }
        Ok(left)
    }

    fn equality(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.comparison()?;
        loop {
            if self.eat_symbol("=") {
                let right = self.comparison()?;
                left = equal(left, right)?;
            } else if self.eat_symbol("<>") {
                let right = self.comparison()?;
                left = Expr::Not(Box::new(equal(left, right)?));
            } else if self.eat_keyword("IS") {
                let negated = self.eat_keyword("NOT");
                if !self.eat_keyword("NULL") {
                    return Err(self.unexpected());
                }
                let is_null = Expr::Compare(
                    Compare::Equal,
                    Box::new(left),
                    Box::new(Expr::Literal(Literal::Null)),
                );
                left = if negated {
                    Expr::Not(Box::new(is_null))
                } else {
                    is_null
                };
            } else {
                return Ok(left);
            }
        }
    }

    fn comparison(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.unary()?;
        loop {
            let ordering = [
                (">", Compare::Greater),
                (">=", Compare::GreaterEqual),
                ("<", Compare::Less),
                ("<=", Compare::LessEqual),
            ]
            .into_iter()
            .find(|(symbol, _)| self.eat_symbol(symbol));
            if let Some((_, op)) = ordering {
                let right = self.unary()?;
                left = ordered(op, left, right)?;
                continue;
            }
            let negated = self.peek_keyword(0, "NOT")
                && ["BETWEEN", "IN", "CONTAINS", "STARTSWITH", "ENDSWITH"]
                    .iter()
                    .any(|keyword| self.peek_keyword(1, keyword));
            self.pos += usize::from(negated);
            let tested = if self.eat_keyword("BETWEEN") {
                let low = self.unary()?;
                if !self.eat_keyword("AND") {
                    return Err(self.unexpected());
                }
                let high = self.unary()?;
                between(left, low, high, negated)?
            } else if self.eat_keyword("IN") {
                let Expr::Property(property) = left else {
                    return Err(FilterError::Invalid(
                        "Expected a property for In expression".to_owned(),
                    ));
                };
                self.expect_symbol("(")?;
                let mut values = vec![self.string_literal()?];
                while self.eat_symbol(",") {
                    values.push(self.string_literal()?);
                }
                self.expect_symbol(")")?;
                Expr::In {
                    property,
                    values,
                    negated,
                }
            } else if let Some(test) = [
                ("CONTAINS", TextTest::Contains),
                ("STARTSWITH", TextTest::StartsWith),
                ("ENDSWITH", TextTest::EndsWith),
            ]
            .into_iter()
            .find_map(|(keyword, test)| self.eat_keyword(keyword).then_some(test))
            {
                let pattern = self.string_literal()?;
                let text = Expr::Text(test, Box::new(left), pattern);
                if negated {
                    Expr::Not(Box::new(text))
                } else {
                    text
                }
            } else {
                return Ok(left);
            };
            left = tested;
        }
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        self.operands += 1;
        if self.operands > MAX_OPERANDS {
            return Err(FilterError::Invalid(format!(
                "expression has more than {MAX_OPERANDS} operands"
            )));
        }
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FilterError::Invalid(format!(
                "expression nested deeper than {MAX_DEPTH}"
            )));
        }
        let expr = self.unary_inner();
        self.depth -= 1;
        expr
    }

    fn unary_inner(&mut self) -> Result<Expr, FilterError> {
        if self.eat_symbol("+") {
            return self.unary();
        }
        if self.eat_symbol("-") {
            return Ok(match self.unary()? {
                Expr::Literal(Literal::Long(n)) => Expr::Literal(Literal::Long(-n)),
                Expr::Literal(Literal::Double(d)) => Expr::Literal(Literal::Double(-d)),
                other => Expr::Negate(Box::new(other)),
            });
        }
        if self.eat_keyword("NOT") {
            let inner = self.unary()?;
            return Ok(Expr::Not(Box::new(as_condition(inner)?)));
        }
        let Some((token, at)) = self.tokens.get(self.pos).cloned() else {
            return Err(self.unexpected());
        };
        self.pos += 1;
        Ok(match token {
            Token::Str(text) => Expr::Literal(Literal::Str(text)),
            Token::Long(n) => Expr::Literal(Literal::Long(n)),
            Token::Double(d) => Expr::Literal(Literal::Double(d)),
            Token::Symbol("(") => {
                self.depth += 1;
                let inner = self.or();
                self.depth -= 1;
                let inner = inner?;
                self.expect_symbol(")")?;
                inner
            }
            Token::Word(word) if word.eq_ignore_ascii_case("TRUE") => {
                Expr::Literal(Literal::Bool(true))
            }
            Token::Word(word) if word.eq_ignore_ascii_case("FALSE") => {
                Expr::Literal(Literal::Bool(false))
            }
            Token::Word(word) if word.eq_ignore_ascii_case("NULL") => Expr::Literal(Literal::Null),
            Token::Word(word) if !KEYWORDS.iter().any(|k| word.eq_ignore_ascii_case(k)) => {
                Expr::Property(word)
            }
            other => {
                return Err(FilterError::Unexpected {
                    found: other.describe(),
                    at,
                });
            }
        })
    }
}

/// Whether `expr` yields a boolean (RocketMQ's BooleanExpression).
fn is_condition(expr: &Expr) -> bool {
    match expr {
        Expr::Literal(literal) => matches!(literal, Literal::Bool(_) | Literal::Null),
        Expr::Property(_) | Expr::Negate(_) => false,
        _ => true,
    }
}

/// `expr` as a condition: a property is cast, other non-boolean expressions are refused.
fn as_condition(expr: Expr) -> Result<Expr, FilterError> {
    match expr {
        Expr::Property(_) => Ok(Expr::BooleanCast(Box::new(expr))),
        expr if is_condition(&expr) => Ok(expr),
        expr => Err(FilterError::Invalid(format!(
            "Expression will not result in a boolean value: {expr:?}"
        ))),
    }
}

fn equal(left: Expr, right: Expr) -> Result<Expr, FilterError> {
    for side in [&left, &right] {
        if *side == Expr::Literal(Literal::Null) {
            return Err(FilterError::Invalid(
                "NULL cannot be compared; use IS NULL".to_owned(),
            ));
        }
    }
    if let (Expr::Literal(Literal::Bool(_)), Expr::Literal(other)) = (&left, &right)
        && !matches!(other, Literal::Bool(_))
    {
        return Err(FilterError::Invalid(format!(
            "{left:?} cannot be compared with {right:?}"
        )));
    }
    Ok(Expr::Compare(
        Compare::Equal,
        Box::new(left),
        Box::new(right),
    ))
}

fn ordered(op: Compare, left: Expr, right: Expr) -> Result<Expr, FilterError> {
    for side in [&left, &right] {
        let comparable = match side {
            Expr::Literal(literal) => matches!(literal, Literal::Long(_) | Literal::Double(_)),
            other => !is_condition(other),
        };
        if !comparable {
            return Err(FilterError::Invalid(format!(
                "Value {side:?} cannot be compared"
            )));
        }
    }
    Ok(Expr::Compare(op, Box::new(left), Box::new(right)))
}

fn between(value: Expr, low: Expr, high: Expr, negated: bool) -> Result<Expr, FilterError> {
    if let (Expr::Literal(l), Expr::Literal(h)) = (&low, &high) {
        if *l == Literal::Null || *h == Literal::Null {
            return Err(FilterError::Invalid(
                "Illegal values of between, values can not be null!".to_owned(),
            ));
        }
        let (l, h) = (literal_value(l), literal_value(h));
        if matches!(order(&h, &l), Ok(Some(Ordering::Less))) {
            return Err(FilterError::Invalid(format!(
                "Illegal values of between, left value({l:?}) must less than or equal to right value({h:?})"
            )));
        }
    }
    let (op_low, op_high) = if negated {
        (Compare::Less, Compare::Greater)
    } else {
        (Compare::GreaterEqual, Compare::LessEqual)
    };
    let low = ordered(op_low, value.clone(), low)?;
    let high = ordered(op_high, value, high)?;
    Ok(if negated {
        Expr::Or(Box::new(low), Box::new(high))
    } else {
        Expr::And(Box::new(low), Box::new(high))
    })
}

fn literal_value(literal: &Literal) -> Value<'_> {
    match literal {
        Literal::Null => Value::Null,
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Long(n) => Value::Long(*n),
        Literal::Double(d) => Value::Double(*d),
        Literal::Str(s) => Value::Str(s),
    }
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
