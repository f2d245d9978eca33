//! The local topic (SNS), queue (SQS) and mailbox (SES) on top of `workflows.db`: plain
//! SQL on a connection, so the task resources run them inside the writer's transaction
//! (with the effect's de-duplication row) and the CLI runs them from another process.

use super::db::DbError;
use base64::Engine as _;
use md5::Digest;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// Names and ARNs of the local resources, shaped like AWS's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub region: String,
    pub account_id: String,
    pub topic: String,
    pub queue: String,
    pub dead_letter_queue: String,
    pub recorder_function: String,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
            topic: "orders-order-events".into(),
            queue: "orders-fulfilment".into(),
            dead_letter_queue: "orders-fulfilment-dlq".into(),
            recorder_function: "orders-recorder".into(),
        }
    }
}

impl Names {
    pub fn topic_arn(&self) -> String {
        format!(
            "arn:aws:sns:{}:{}:{}",
            self.region, self.account_id, self.topic
        )
    }
    pub fn queue_url(&self, queue: &str) -> String {
        format!(
            "https://sqs.{}.amazonaws.com/{}/{queue}",
            self.region, self.account_id
        )
    }
    pub fn queue_arn(&self, queue: &str) -> String {
        format!("arn:aws:sqs:{}:{}:{queue}", self.region, self.account_id)
    }
    pub fn recorder_arn(&self) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{}",
            self.region, self.account_id, self.recorder_function
        )
    }
}

/// The queue name in a queue URL (its last path segment).
pub fn queue_name_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

pub fn md5_hex(data: &[u8]) -> String {
    format!("{:x}", md5::Md5::digest(data))
}

/// SQS's MD5OfMessageAttributes: names sorted, each encoded as length-prefixed name,
/// data type, a transport byte (1 string, 2 binary) and length-prefixed value.
pub fn md5_of_attributes(attributes: &Map<String, Value>) -> Option<String> {
    if attributes.is_empty() {
        return None;
    }
    let mut names: Vec<&String> = attributes.keys().collect();
    names.sort();
    let mut buf = Vec::new();
    let put = |b: &[u8], buf: &mut Vec<u8>| {
        buf.extend_from_slice(&(b.len() as u32).to_be_bytes());
        buf.extend_from_slice(b);
    };
    for name in names {
        let a = &attributes[name];
        let data_type = a
            .get("DataType")
            .and_then(Value::as_str)
            .unwrap_or("String");
        put(name.as_bytes(), &mut buf);
        put(data_type.as_bytes(), &mut buf);
        if let Some(b) = a.get("BinaryValue").and_then(Value::as_str) {
            buf.push(2);
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b)
                .unwrap_or_else(|_| b.as_bytes().to_vec());
            put(&bytes, &mut buf);
        } else {
            buf.push(1);
            let s = a.get("StringValue").and_then(Value::as_str).unwrap_or("");
            put(s.as_bytes(), &mut buf);
        }
    }
    Some(md5_hex(&buf))
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> DbError {
    DbError::Corrupt(format!("{what}: {e}"))
}

fn new_id() -> String {
    // UUID-shaped like SNS/SQS message ids, from a ULID (time-ordered, unique).
    let u = ulid::Ulid::new().0.to_be_bytes();
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn correlation_of(attributes: &Map<String, Value>) -> Option<String> {
    attributes
        .get("correlation_id")
        .and_then(|a| a.get("StringValue"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

// ---- topic ----

#[derive(Debug, Clone, Serialize)]
pub struct TopicMessage {
    pub seq: i64,
    pub message_id: String,
    pub topic_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub message: String,
    pub message_attributes: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    pub published_at: i64,
}

/// SNS Publish: stores the message and delivers it to each subscribed queue (as the SNS
/// notification envelope SQS subscribers receive). Returns the message id.
pub fn publish(
    c: &Connection,
    topic_arn: &str,
    subject: Option<&str>,
    message: &str,
    attributes: &Map<String, Value>,
    now: i64,
) -> Result<String, DbError> {
    let id = new_id();
    let correlation = correlation_of(attributes);
    c.prepare_cached(
        "INSERT INTO topic_messages (message_id, topic_arn, subject, message, attributes, correlation_id, published_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        id,
        topic_arn,
        subject,
        message,
        Value::Object(attributes.clone()).to_string(),
        correlation,
        now
    ])?;
    let queues: Vec<String> = {
        let mut stmt = c.prepare_cached("SELECT queue FROM subscriptions WHERE topic_arn = ?1")?;
        stmt.query_map([topic_arn], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    for q in queues {
        let attrs: Map<String, Value> = attributes
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    json!({"Type": v.get("DataType").cloned().unwrap_or(json!("String")),
                           "Value": v.get("StringValue").cloned().unwrap_or(Value::Null)}),
                )
            })
            .collect();
        let envelope = json!({
            "Type": "Notification",
            "MessageId": id,
            "TopicArn": topic_arn,
            "Subject": subject,
            "Message": message,
            "Timestamp": asl::timestamp::format_millis(now),
            "MessageAttributes": attrs,
        });
        send_message(
            c,
            &q,
            &envelope.to_string(),
            &Map::new(),
            correlation.as_deref(),
            now,
        )?;
    }
    Ok(id)
}

pub fn subscribe_queue(c: &Connection, topic_arn: &str, queue: &str) -> Result<(), DbError> {
    c.prepare_cached("INSERT OR IGNORE INTO subscriptions (topic_arn, queue) VALUES (?1, ?2)")?
        .execute(params![topic_arn, queue])?;
    Ok(())
}

pub fn topic_messages(c: &Connection, limit: usize) -> Result<Vec<TopicMessage>, DbError> {
    let limit = if limit == 0 { -1 } else { limit as i64 };
    let mut stmt = c.prepare_cached(
        "SELECT seq, message_id, topic_arn, subject, message, attributes, correlation_id, published_at \
         FROM topic_messages ORDER BY seq DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit], topic_row)?;
    rows.map(|r| finish_topic(r?)).collect()
}

type TopicRow = (
    i64,
    String,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    i64,
);

fn topic_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TopicRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn finish_topic(row: TopicRow) -> Result<TopicMessage, DbError> {
    let (seq, message_id, topic_arn, subject, message, attrs, correlation_id, published_at) = row;
    Ok(TopicMessage {
        seq,
        message_id,
        topic_arn,
        subject,
        message,
        message_attributes: serde_json::from_str(&attrs)
            .map_err(|e| corrupt("topic message attributes", e))?,
        correlation_id,
        published_at,
    })
}

// ---- queue ----

pub const AVAILABLE: &str = "AVAILABLE";
pub const DELETED: &str = "DELETED";

#[derive(Debug, Clone, Serialize)]
pub struct QueueMessage {
    pub seq: i64,
    pub message_id: String,
    pub queue: String,
    pub body: String,
    pub md5_of_body: String,
    pub message_attributes: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    pub sent_at: i64,
    /// AVAILABLE (waiting or in flight) or DELETED (consumed).
    pub state: String,
    pub visible_at: i64,
    pub receive_count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_received_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_handle: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// For a message in a dead-letter queue: where it came from, and why it is here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_queue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_reason: Option<String>,
}

const QUEUE_COLUMNS: &str = "seq, message_id, queue, body, md5, attributes, correlation_id, sent_at, \
     state, visible_at, receive_count, first_received_at, receipt_handle, last_error, source_queue, dead_reason";

fn queue_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(QueueMessage, String)> {
    Ok((
        QueueMessage {
            seq: r.get(0)?,
            message_id: r.get(1)?,
            queue: r.get(2)?,
            body: r.get(3)?,
            md5_of_body: r.get(4)?,
            message_attributes: Value::Null,
            correlation_id: r.get(6)?,
            sent_at: r.get(7)?,
            state: r.get(8)?,
            visible_at: r.get(9)?,
            receive_count: r.get::<_, i64>(10)?.clamp(0, u32::MAX as i64) as u32,
            first_received_at: r.get(11)?,
            receipt_handle: r.get(12)?,
            last_error: r.get(13)?,
            source_queue: r.get(14)?,
            dead_reason: r.get(15)?,
        },
        r.get(5)?,
    ))
}

fn finish_rows(
    rows: impl Iterator<Item = rusqlite::Result<(QueueMessage, String)>>,
) -> Result<Vec<QueueMessage>, DbError> {
    let mut out = Vec::new();
    for row in rows {
        let (mut m, attrs) = row?;
        m.message_attributes =
            serde_json::from_str(&attrs).map_err(|e| corrupt("queue message attributes", e))?;
        out.push(m);
    }
    Ok(out)
}

/// SQS SendMessage. Returns (MessageId, MD5OfMessageBody).
pub fn send_message(
    c: &Connection,
    queue: &str,
    body: &str,
    attributes: &Map<String, Value>,
    correlation_id: Option<&str>,
    now: i64,
) -> Result<(String, String), DbError> {
    let id = new_id();
    let md5 = md5_hex(body.as_bytes());
    let correlation = correlation_id
        .map(str::to_string)
        .or_else(|| correlation_of(attributes));
    c.prepare_cached(
        "INSERT INTO queue_messages (message_id, queue, body, md5, attributes, correlation_id, sent_at, state, visible_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'AVAILABLE', ?7)",
    )?
    .execute(params![
        id,
        queue,
        body,
        md5,
        Value::Object(attributes.clone()).to_string(),
        correlation,
        now
    ])?;
    Ok((id, md5))
}

/// SQS ReceiveMessage: up to `max` visible messages, each hidden for `visibility_ms`
/// with its receive count raised and a fresh receipt handle.
pub fn receive(
    c: &Connection,
    queue: &str,
    max: usize,
    visibility_ms: i64,
    now: i64,
) -> Result<Vec<QueueMessage>, DbError> {
    let mut msgs = {
        let mut stmt = c.prepare_cached(&format!(
            "SELECT {QUEUE_COLUMNS} FROM queue_messages WHERE queue = ?1 AND state = 'AVAILABLE' \
             AND visible_at <= ?2 ORDER BY visible_at, seq LIMIT ?3"
        ))?;
        finish_rows(stmt.query_map(params![queue, now, max as i64], queue_row)?)?
    };
    let mut update = c.prepare_cached(
        "UPDATE queue_messages SET receive_count = receive_count + 1, visible_at = ?2, \
         receipt_handle = ?3, first_received_at = COALESCE(first_received_at, ?4) WHERE seq = ?1",
    )?;
    for m in &mut msgs {
        let handle = format!(
            "{}#{}",
            m.message_id,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(new_id())
        );
        update.execute(params![m.seq, now + visibility_ms, handle, now])?;
        m.receive_count += 1;
        m.visible_at = now + visibility_ms;
        m.first_received_at = m.first_received_at.or(Some(now));
        m.receipt_handle = Some(handle);
    }
    Ok(msgs)
}

/// SQS DeleteMessage. `false` when the handle is stale (the message was received again).
pub fn delete(c: &Connection, receipt_handle: &str, now: i64) -> Result<bool, DbError> {
    let n = c
        .prepare_cached(
            "UPDATE queue_messages SET state = 'DELETED', done_at = ?2 \
             WHERE receipt_handle = ?1 AND state = 'AVAILABLE'",
        )?
        .execute(params![receipt_handle, now])?;
    Ok(n == 1)
}

/// A failed delivery: the message stays hidden until its visibility timeout ends, unless
/// it has been received `max_receive_count` times: then it moves to `dead_letter_queue`
/// with the reason (what the redrive policy would do on its next receive).
pub fn fail(
    c: &Connection,
    receipt_handle: &str,
    reason: &str,
    max_receive_count: u32,
    dead_letter_queue: &str,
    now: i64,
) -> Result<bool, DbError> {
    let row: Option<(i64, i64, String)> = c
        .prepare_cached(
            "SELECT seq, receive_count, queue FROM queue_messages WHERE receipt_handle = ?1 AND state = 'AVAILABLE'",
        )?
        .query_row([receipt_handle], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((seq, count, queue)) = row else {
        return Ok(false);
    };
    if count >= i64::from(max_receive_count) {
        let why = format!("{reason} (received {count} times, maxReceiveCount {max_receive_count})");
        c.prepare_cached(
            "UPDATE queue_messages SET queue = ?2, source_queue = ?3, dead_reason = ?4, last_error = ?5, \
             receive_count = 0, visible_at = ?6, receipt_handle = NULL WHERE seq = ?1",
        )?
        .execute(params![seq, dead_letter_queue, queue, why, reason, now])?;
        Ok(true)
    } else {
        c.prepare_cached("UPDATE queue_messages SET last_error = ?2 WHERE seq = ?1")?
            .execute(params![seq, reason])?;
        Ok(false)
    }
}

/// Messages of a queue, oldest first. `include_deleted` shows consumed ones too.
pub fn queue_messages(
    c: &Connection,
    queue: &str,
    include_deleted: bool,
    limit: usize,
) -> Result<Vec<QueueMessage>, DbError> {
    messages_of(c, queue, include_deleted, limit, false)
}

/// In order of arrival, or newest first; a limit of 0 means all.
fn messages_of(
    c: &Connection,
    queue: &str,
    include_deleted: bool,
    limit: usize,
    newest_first: bool,
) -> Result<Vec<QueueMessage>, DbError> {
    let limit = if limit == 0 { -1 } else { limit as i64 };
    let order = if newest_first { "DESC" } else { "ASC" };
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {QUEUE_COLUMNS} FROM queue_messages WHERE queue = ?1 AND (?2 OR state = 'AVAILABLE') \
         ORDER BY seq {order} LIMIT ?3"
    ))?;
    finish_rows(stmt.query_map(params![queue, include_deleted, limit], queue_row)?)
}

/// Counts of a queue's messages: (waiting or in flight, consumed).
pub fn queue_counts(c: &Connection, queue: &str) -> Result<(u64, u64), DbError> {
    let (a, d): (i64, i64) = c
        .prepare_cached(
            "SELECT COALESCE(SUM(state = 'AVAILABLE'), 0), COALESCE(SUM(state = 'DELETED'), 0) \
             FROM queue_messages WHERE queue = ?1",
        )?
        .query_row([queue], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok((a.max(0) as u64, d.max(0) as u64))
}

/// Moves every message of the dead-letter queue back to its source queue (SQS's
/// StartMessageMoveTask), visible now, with a fresh receive count. Returns the ids moved.
pub fn redrive(
    c: &Connection,
    dead_letter_queue: &str,
    message_id: Option<&str>,
    now: i64,
) -> Result<Vec<String>, DbError> {
    let ids: Vec<(i64, String)> = {
        let mut stmt = c.prepare_cached(
            "SELECT seq, message_id FROM queue_messages WHERE queue = ?1 AND state = 'AVAILABLE' \
             AND source_queue IS NOT NULL AND (?2 IS NULL OR message_id = ?2) ORDER BY seq",
        )?;
        stmt.query_map(params![dead_letter_queue, message_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?
    };
    let mut update = c.prepare_cached(
        "UPDATE queue_messages SET queue = source_queue, source_queue = NULL, dead_reason = NULL, \
         receive_count = 0, visible_at = ?2, receipt_handle = NULL WHERE seq = ?1",
    )?;
    for (seq, _) in &ids {
        update.execute(params![seq, now])?;
    }
    Ok(ids.into_iter().map(|(_, id)| id).collect())
}

// ---- effects (task de-duplication) ----

pub fn effect(c: &Connection, key: &str) -> Result<Option<Value>, DbError> {
    let text: Option<String> = c
        .prepare_cached("SELECT response FROM effects WHERE invocation_key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt("effect", e)))
        .transpose()
}

pub fn record_effect(c: &Connection, key: &str, response: &Value) -> Result<(), DbError> {
    c.prepare_cached("INSERT OR REPLACE INTO effects (invocation_key, response) VALUES (?1, ?2)")?
        .execute(params![key, response.to_string()])?;
    Ok(())
}

// ---- mailbox ----

pub fn set_identity(c: &Connection, address: &str, verified: bool) -> Result<(), DbError> {
    c.prepare_cached(
        "INSERT INTO identities (address, verified) VALUES (?1, ?2) \
         ON CONFLICT (address) DO UPDATE SET verified = excluded.verified",
    )?
    .execute(params![address.to_ascii_lowercase(), verified])?;
    Ok(())
}

/// Is the address (or its domain) a verified SES identity?
pub fn is_verified(c: &Connection, address: &str) -> Result<bool, DbError> {
    let address = address.to_ascii_lowercase();
    let domain = address.rsplit('@').next().unwrap_or("").to_string();
    // The address's own identity wins over its domain's. Two key lookups: an OR with an
    // ORDER BY made SQLite build and drop a temporary b-tree on every email.
    let mut lookup = c.prepare_cached("SELECT verified FROM identities WHERE address = ?1")?;
    for key in [address.as_str(), domain.as_str()] {
        if let Some(v) = lookup.query_row([key], |r| r.get(0)).optional()? {
            return Ok(v);
        }
    }
    Ok(false)
}

pub fn identities(c: &Connection) -> Result<Vec<(String, bool)>, DbError> {
    let mut stmt = c.prepare_cached("SELECT address, verified FROM identities ORDER BY address")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[derive(Debug, Clone, Serialize)]
pub struct Mail {
    pub seq: i64,
    pub message_id: String,
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    pub sent_at: i64,
    /// The RFC 5322 message.
    #[serde(skip)]
    pub raw: String,
}

pub struct NewMail<'a> {
    pub message_id: &'a str,
    pub from: &'a str,
    pub to: &'a [String],
    pub subject: &'a str,
    pub correlation_id: Option<&'a str>,
    pub raw: &'a str,
    pub sent_at: i64,
}

pub fn store_mail(c: &Connection, m: &NewMail<'_>) -> Result<(), DbError> {
    c.prepare_cached(
        "INSERT INTO mail (message_id, from_address, to_addresses, subject, correlation_id, raw, sent_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        m.message_id,
        m.from,
        serde_json::to_string(m.to).map_err(|e| corrupt("recipients", e))?,
        m.subject,
        m.correlation_id,
        m.raw,
        m.sent_at
    ])?;
    Ok(())
}

fn mail_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Mail, String)> {
    Ok((
        Mail {
            seq: r.get(0)?,
            message_id: r.get(1)?,
            from: r.get(2)?,
            to: vec![],
            subject: r.get(4)?,
            correlation_id: r.get(5)?,
            sent_at: r.get(6)?,
            raw: r.get(7)?,
        },
        r.get(3)?,
    ))
}

fn finish_mail(row: (Mail, String)) -> Result<Mail, DbError> {
    let (mut m, to) = row;
    m.to = serde_json::from_str(&to).map_err(|e| corrupt("recipients", e))?;
    Ok(m)
}

const MAIL_COLUMNS: &str =
    "seq, message_id, from_address, to_addresses, subject, correlation_id, sent_at, raw";

pub fn mails(c: &Connection, limit: usize) -> Result<Vec<Mail>, DbError> {
    let limit = if limit == 0 { -1 } else { limit as i64 };
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {MAIL_COLUMNS} FROM mail ORDER BY seq DESC LIMIT ?1"
    ))?;
    let rows = stmt.query_map([limit], mail_row)?;
    rows.map(|r| finish_mail(r?)).collect()
}

/// One message by SES message id (or its list number).
pub fn mail(c: &Connection, id: &str) -> Result<Option<Mail>, DbError> {
    let seq: i64 = id.parse().unwrap_or(-1);
    let row = c
        .prepare_cached(&format!(
            "SELECT {MAIL_COLUMNS} FROM mail WHERE message_id = ?1 OR seq = ?2"
        ))?
        .query_row(params![id, seq], mail_row)
        .optional()?;
    row.map(finish_mail).transpose()
}

pub fn count(c: &Connection, table: &str) -> Result<u64, DbError> {
    let sql = match table {
        "mail" => "SELECT COUNT(*) FROM mail",
        "topic_messages" => "SELECT COUNT(*) FROM topic_messages",
        "queue_messages" => "SELECT COUNT(*) FROM queue_messages",
        "executions" => "SELECT COUNT(*) FROM executions",
        other => return Err(DbError::Corrupt(format!("no table {other}"))),
    };
    let n: i64 = c.prepare_cached(sql)?.query_row([], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

// ---- lookups for the console ----

/// Messages of a queue, newest first (the console: after a while the oldest are the
/// least interesting). `include_deleted` shows consumed ones too.
pub fn queue_messages_newest(
    c: &Connection,
    queue: &str,
    include_deleted: bool,
    limit: usize,
) -> Result<Vec<QueueMessage>, DbError> {
    messages_of(c, queue, include_deleted, limit, true)
}

/// Everything the local services hold about one order: messages carrying its correlation
/// id, or whose body (subject, for mail) mentions `needle` (its order id). A scan: there
/// is no index on either, which is fine for a page a person opens.
#[derive(Debug, Clone, Default)]
pub struct Related {
    pub topic: Vec<TopicMessage>,
    /// Any queue, dead-letter queue included, consumed messages included.
    pub queue: Vec<QueueMessage>,
    pub mail: Vec<Mail>,
}

pub fn related(c: &Connection, correlation_id: &str, needle: &str) -> Result<Related, DbError> {
    // LIKE wildcards in an id would widen the match: escape them.
    let pattern = format!(
        "%{}%",
        needle
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let topic = {
        let mut stmt = c.prepare_cached(
            "SELECT seq, message_id, topic_arn, subject, message, attributes, correlation_id, published_at \
             FROM topic_messages WHERE correlation_id = ?1 OR message LIKE ?2 ESCAPE '\\' \
             ORDER BY seq LIMIT 100",
        )?;
        let rows = stmt.query_map(params![correlation_id, pattern], topic_row)?;
        rows.map(|r| finish_topic(r?)).collect::<Result<_, _>>()?
    };
    let queue = {
        let mut stmt = c.prepare_cached(&format!(
            "SELECT {QUEUE_COLUMNS} FROM queue_messages WHERE correlation_id = ?1 OR body LIKE ?2 ESCAPE '\\' \
             ORDER BY seq LIMIT 100"
        ))?;
        finish_rows(stmt.query_map(params![correlation_id, pattern], queue_row)?)?
    };
    let mail = {
        let mut stmt = c.prepare_cached(&format!(
            "SELECT {MAIL_COLUMNS} FROM mail WHERE correlation_id = ?1 OR subject LIKE ?2 ESCAPE '\\' \
             ORDER BY seq LIMIT 100"
        ))?;
        let rows = stmt.query_map(params![correlation_id, pattern], mail_row)?;
        rows.map(|r| finish_mail(r?)).collect::<Result<_, _>>()?
    };
    Ok(Related { topic, queue, mail })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_verified_by_its_own_identity_first_then_by_its_domain() {
        let c = Connection::open_in_memory().expect("in-memory db");
        c.execute_batch(super::super::db::SCHEMA).expect("schema");
        assert!(!is_verified(&c, "ada@example.com").expect("lookup"));

        set_identity(&c, "example.com", true).expect("domain");
        assert!(is_verified(&c, "ada@example.com").expect("lookup"));
        assert!(
            is_verified(&c, "ADA@Example.com").expect("lookup"),
            "case-insensitive"
        );

        set_identity(&c, "ada@example.com", false).expect("address");
        assert!(
            !is_verified(&c, "ada@example.com").expect("lookup"),
            "the address wins"
        );
        assert!(is_verified(&c, "bob@example.com").expect("lookup"));
        assert!(!is_verified(&c, "bob@elsewhere.example").expect("lookup"));
    }
}
