//! The PostgreSQL connection. The synchronous `postgres` client runs its own
//! small runtime, which must never be created, used or dropped on a tokio
//! worker; so the client lives on a thread of its own and the store talks to
//! it over a channel. Values are converted to whatever type the server
//! inferred for each parameter.

use std::error::Error;
use std::sync::mpsc;

use anyhow::Context;
use postgres::Client;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::{Db, Dialect, Val};

enum Op {
    Execute(String, Vec<Val>, mpsc::Sender<anyhow::Result<u64>>),
    Query(
        String,
        Vec<Val>,
        mpsc::Sender<anyhow::Result<Vec<Vec<Val>>>>,
    ),
    Batch(String, mpsc::Sender<anyhow::Result<()>>),
}

/// A PostgreSQL connection on its own thread.
pub struct PgDb {
    ops: mpsc::Sender<Op>,
}

impl PgDb {
    /// Connects to `url` (`postgres://user@host:port/db?options=…`).
    pub fn connect(url: &str) -> anyhow::Result<PgDb> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (ops, rx) = mpsc::channel::<Op>();
        let shown = crate::redact::secrets(url);
        let target = super::pg_tls::parse(url)
            .with_context(|| format!("PostgreSQL at {shown} (alerting.store)"))?;
        std::thread::Builder::new()
            .name("store-postgres".into())
            .spawn(move || {
                let mut client = match super::pg_tls::connect(&target) {
                    Ok(c) => {
                        let _ = ready_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                serve(&mut client, rx);
            })?;
        ready_rx
            .recv()
            .context("the PostgreSQL connection thread stopped")?
            .with_context(|| format!("cannot connect to PostgreSQL at {shown} (alerting.store)"))?;
        Ok(PgDb { ops })
    }
}

fn serve(client: &mut Client, rx: mpsc::Receiver<Op>) {
    while let Ok(op) = rx.recv() {
        match op {
            Op::Execute(sql, params, reply) => {
                let r = with_params(&params, |p| client.execute(sql.as_str(), p))
                    .with_context(|| format!("PostgreSQL statement failed: {sql}"));
                let _ = reply.send(r);
            }
            Op::Query(sql, params, reply) => {
                let r = with_params(&params, |p| client.query(sql.as_str(), p))
                    .with_context(|| format!("PostgreSQL query failed: {sql}"))
                    .and_then(|rows| rows.iter().map(decode_row).collect());
                let _ = reply.send(r);
            }
            Op::Batch(sql, reply) => {
                let r = client
                    .batch_execute(&sql)
                    .with_context(|| format!("PostgreSQL batch failed: {sql}"));
                let _ = reply.send(r);
            }
        }
    }
}

fn with_params<T>(
    params: &[Val],
    f: impl FnOnce(&[&(dyn ToSql + Sync)]) -> Result<T, postgres::Error>,
) -> Result<T, postgres::Error> {
    let wrapped: Vec<PgVal<'_>> = params.iter().map(PgVal).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = wrapped.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
    f(&refs)
}

fn decode_row(row: &postgres::Row) -> anyhow::Result<Vec<Val>> {
    let mut out = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let ty = col.type_();
        let v = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(i)?.map(Val::Int)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)?
                .map(|v| Val::Int(v.into()))
        } else if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(i)?
                .map(|v| Val::Int(v.into()))
        } else if *ty == Type::FLOAT8 {
            row.try_get::<_, Option<f64>>(i)?.map(Val::Real)
        } else if *ty == Type::FLOAT4 {
            row.try_get::<_, Option<f32>>(i)?
                .map(|v| Val::Real(v.into()))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)?
                .map(|v| Val::Int(v as i64))
        } else if *ty == Type::TEXT
            || *ty == Type::VARCHAR
            || *ty == Type::BPCHAR
            || *ty == Type::NAME
        {
            row.try_get::<_, Option<String>>(i)?.map(Val::Text)
        } else {
            anyhow::bail!(
                "column {} has type {ty}, which the store does not read",
                col.name()
            )
        };
        out.push(v.unwrap_or(Val::Null));
    }
    Ok(out)
}

/// A value bound to whatever type the server wants for the parameter.
#[derive(Debug)]
struct PgVal<'a>(&'a Val);

impl ToSql for PgVal<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self.0 {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(i) => {
                if *ty == Type::INT8 {
                    i.to_sql(ty, out)
                } else if *ty == Type::INT4 {
                    i32::try_from(*i)?.to_sql(ty, out)
                } else if *ty == Type::INT2 {
                    i16::try_from(*i)?.to_sql(ty, out)
                } else if *ty == Type::FLOAT8 {
                    (*i as f64).to_sql(ty, out)
                } else if *ty == Type::BOOL {
                    (*i != 0).to_sql(ty, out)
                } else {
                    i.to_string().to_sql(ty, out)
                }
            }
            Val::Real(f) => {
                if *ty == Type::FLOAT4 {
                    (*f as f32).to_sql(ty, out)
                } else {
                    f.to_sql(ty, out)
                }
            }
            Val::Text(s) => s.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl Db for PgDb {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Val]) -> anyhow::Result<u64> {
        let (tx, rx) = mpsc::channel();
        self.ops
            .send(Op::Execute(sql.to_string(), params.to_vec(), tx))
            .ok()
            .context("the PostgreSQL connection thread stopped")?;
        rx.recv()
            .context("the PostgreSQL connection thread stopped")?
    }

    fn query(&mut self, sql: &str, params: &[Val]) -> anyhow::Result<Vec<Vec<Val>>> {
        let (tx, rx) = mpsc::channel();
        self.ops
            .send(Op::Query(sql.to_string(), params.to_vec(), tx))
            .ok()
            .context("the PostgreSQL connection thread stopped")?;
        rx.recv()
            .context("the PostgreSQL connection thread stopped")?
    }

    fn batch(&mut self, sql: &str) -> anyhow::Result<()> {
        let (tx, rx) = mpsc::channel();
        self.ops
            .send(Op::Batch(sql.to_string(), tx))
            .ok()
            .context("the PostgreSQL connection thread stopped")?;
        rx.recv()
            .context("the PostgreSQL connection thread stopped")?
    }
}

/// Creates an empty schema `name` in the database at `url` and returns a URL
/// whose connections use it (tests isolate themselves this way).
pub fn fresh_schema(url: &str, name: &str) -> anyhow::Result<String> {
    // PostgreSQL cuts identifiers at 63 bytes: a short readable part and a
    // hash of the whole name keep schemas apart.
    let short: String = name
        .chars()
        .take(20)
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let pid = std::process::id().to_le_bytes();
    let hash = crate::model::stable_hash(&[name.as_bytes(), &pid]);
    let schema = format!("mw_{short}_{hash:016x}");
    let url2 = url.to_string();
    let schema2 = schema.clone();
    std::thread::spawn(move || -> anyhow::Result<()> {
        let mut c = super::pg_tls::connect(&super::pg_tls::parse(&url2)?)?;
        c.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema2} CASCADE; CREATE SCHEMA {schema2};"
        ))?;
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("schema thread panicked"))??;
    let sep = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{sep}options=-csearch_path%3D{schema}"))
}
