//! One connection's compiled permissions and the check of each method against them, where
//! RabbitMQ checks (its access-control table):
//!
//! | method | configure | write | read |
//! |---|---|---|---|
//! | exchange.declare (not passive) | exchange | alternate exchange | exchange, if it has an AE |
//! | exchange.delete | exchange | | |
//! | queue.declare (not passive) | queue | dead-letter exchange | queue, if it has a DLX |
//! | queue.delete | queue | | |
//! | queue.bind / unbind | | queue | exchange |
//! | exchange.bind / unbind | | destination | source |
//! | basic.publish | | exchange | |
//! | basic.consume / get, queue.purge | | | queue |
//!
//! Invariants: a regex is searched anywhere in the name (not anchored), as Erlang's `re:run`
//! does; an empty regex matches nothing; the default exchange is named `amq.default` here.

use regex::Regex;

use crate::codec::methods::Method;
use crate::codec::table::{FieldTable, FieldValue};
use crate::error::{ACCESS_REFUSED, AmqpError};

use super::Permissions;

/// What a permission applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Queue,
    Exchange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Configure,
    Write,
    Read,
}

/// One compiled permission regex.
#[derive(Debug, Clone)]
enum Matcher {
    /// The empty regex: refuses everything.
    Nothing,
    /// `.*` (RabbitMQ's default grant) and spellings that match every name as well (not
    /// `^.*$`: `.` stops at a newline): no regex search per method.
    Everything,
    Regex(Regex),
}

/// Compiled regexes of one (user, vhost).
#[derive(Debug, Clone)]
pub struct Grant {
    configure: Matcher,
    write: Matcher,
    read: Matcher,
}

fn compile(pattern: &str) -> Result<Matcher, String> {
    match pattern {
        "" => Ok(Matcher::Nothing),
        ".*" | "^.*" | ".*$" => Ok(Matcher::Everything),
        _ => Regex::new(pattern)
            .map(Matcher::Regex)
            .map_err(|error| format!("invalid permission regex `{pattern}`: {error}")),
    }
}

impl Grant {
    pub fn compile(permissions: &Permissions) -> Result<Self, String> {
        Ok(Self {
            configure: compile(&permissions.configure)?,
            write: compile(&permissions.write)?,
            read: compile(&permissions.read)?,
        })
    }

    fn allows(&self, access: Access, name: &str) -> bool {
        let regex = match access {
            Access::Configure => &self.configure,
            Access::Write => &self.write,
            Access::Read => &self.read,
        };
        match regex {
            Matcher::Nothing => false,
            Matcher::Everything => true,
            Matcher::Regex(regex) => regex.is_match(name),
        }
    }

    /// Whether this grant holds `access` on `name` (another protocol's topic or group).
    pub fn allows_access(&self, access: tributary_api::Access, name: &str) -> bool {
        self.allows(
            match access {
                tributary_api::Access::Configure => Access::Configure,
                tributary_api::Access::Write => Access::Write,
                tributary_api::Access::Read => Access::Read,
            },
            name,
        )
    }

    /// Refuses `method` with RabbitMQ's 403 when `user` lacks a permission it needs.
    pub fn check(&self, method: &Method, vhost: &str, user: &str) -> Result<(), AmqpError> {
        let demand = |access, kind, name: &str| -> Result<(), AmqpError> {
            let name = match (kind, name) {
                (Kind::Exchange, "") => "amq.default",
                _ => name,
            };
            if self.allows(access, name) {
                return Ok(());
            }
            let kind = match kind {
                Kind::Queue => "queue",
                Kind::Exchange => "exchange",
            };
            Err(AmqpError::channel(
                ACCESS_REFUSED,
                format_args!(
                    "access to {kind} '{name}' in vhost '{vhost}' refused for user '{user}'"
                ),
            ))
        };
        let argument = |arguments: &FieldTable, name| {
            arguments
                .get(name)
                .and_then(FieldValue::as_str)
                .map(str::to_owned)
        };
        use Access::{Configure, Read, Write};
        use Kind::{Exchange, Queue};
        match method {
            Method::ExchangeDeclare(decl) if !decl.passive => {
                demand(Configure, Exchange, &decl.exchange)?;
                if let Some(alternate) = argument(&decl.arguments, "alternate-exchange") {
                    demand(Write, Exchange, &alternate)?;
                    demand(Read, Exchange, &decl.exchange)?;
                }
                Ok(())
            }
            Method::ExchangeDelete { exchange, .. } => demand(Configure, Exchange, exchange),
            Method::QueueDeclare(decl) if !decl.passive => {
                demand(Configure, Queue, &decl.queue)?;
                if let Some(dlx) = argument(&decl.arguments, "x-dead-letter-exchange") {
                    demand(Write, Exchange, &dlx)?;
                    demand(Read, Queue, &decl.queue)?;
                }
                Ok(())
            }
            Method::QueueDelete { queue, .. } => demand(Configure, Queue, queue),
            Method::QueueBind(binding) | Method::QueueUnbind(binding) => {
                demand(Write, Queue, &binding.destination)?;
                demand(Read, Exchange, &binding.source)
            }
            Method::ExchangeBind(binding) | Method::ExchangeUnbind(binding) => {
                demand(Write, Exchange, &binding.destination)?;
                demand(Read, Exchange, &binding.source)
            }
            Method::BasicPublish { exchange, .. } => demand(Write, Exchange, exchange),
            Method::BasicConsume(consume) => demand(Read, Queue, &consume.queue),
            Method::BasicGet { queue, .. } | Method::QueuePurge { queue, .. } => {
                demand(Read, Queue, queue)
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::methods::QueueDeclare;

    fn grant(configure: &str, write: &str, read: &str) -> Grant {
        Grant::compile(&Permissions {
            configure: configure.into(),
            write: write.into(),
            read: read.into(),
        })
        .unwrap()
    }

    fn declare(queue: &str) -> Method {
        Method::QueueDeclare(QueueDeclare {
            queue: queue.into(),
            ..Default::default()
        })
    }

    #[test]
    fn regexes_are_searched_unanchored_and_empty_refuses() {
        let g = grant("^app\\.", "", "jobs");
        assert!(g.check(&declare("app.q"), "/", "u").is_ok());
        assert!(g.check(&declare("myjobs"), "/", "u").is_err());
        let publish = Method::BasicPublish {
            exchange: String::new(),
            routing_key: "q".into(),
            mandatory: false,
            immediate: false,
        };
        let refused = g.check(&publish, "v", "u").unwrap_err();
        let AmqpError::Channel(reply) = refused else {
            panic!("a channel error")
        };
        assert_eq!(reply.code, ACCESS_REFUSED);
        assert_eq!(
            reply.text,
            "ACCESS_REFUSED - access to exchange 'amq.default' in vhost 'v' refused for user 'u'"
        );
        let get = Method::BasicGet {
            queue: "old-jobs".into(),
            no_ack: false,
        };
        assert!(g.check(&get, "/", "u").is_ok());
        assert!(Grant::compile(&Permissions::full()).is_ok());
        assert!(
            Grant::compile(&Permissions {
                configure: "(".into(),
                ..Permissions::full()
            })
            .is_err()
        );
    }

    #[test]
    fn passive_declares_need_no_permission() {
        let g = grant("", "", "");
        let passive = Method::QueueDeclare(QueueDeclare {
            queue: "q".into(),
            passive: true,
            ..Default::default()
        });
        assert!(g.check(&passive, "/", "u").is_ok());
        assert!(g.check(&declare("q"), "/", "u").is_err());
    }

    #[test]
    fn match_everything_spellings_agree_with_their_regex() {
        let names = ["", "q", "amq.default", "two\nlines", "x\n"];
        for pattern in [".*", "^.*", ".*$"] {
            let Matcher::Everything = compile(pattern).unwrap() else {
                panic!("{pattern} is taken as everything");
            };
            let regex = Regex::new(pattern).unwrap();
            assert!(names.iter().all(|name| regex.is_match(name)), "{pattern}");
        }
        // Not everything: `.` stops at a newline, so the anchored form misses such names.
        assert!(matches!(compile("^.*$").unwrap(), Matcher::Regex(_)));
        assert!(!Regex::new("^.*$").unwrap().is_match("two\nlines"));
    }
}
