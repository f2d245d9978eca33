//! How long the local runtime keeps what it stores, as AWS would: a closed execution and
//! its history for `executions` (Step Functions keeps Standard executions 90 days), a
//! message for its queue's retention period (SQS: the template's 4 days for the fulfilment
//! queue, 14 for its dead-letter queue, counted from the first send as SQS does), and the
//! local inspection records (emails, topic messages, consumed queue messages) as long as
//! executions. Running executions and messages still in flight are never touched.

use super::db::{DbError, WorkflowDb};
use super::services::Names;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::PathBuf;
use std::time::Duration;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Rows removed per transaction, so that a sweep never holds the writer for long.
const BATCH: i64 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Closed executions, emails, topic messages and consumed queue messages.
    pub executions: Duration,
    /// Messages of the fulfilment queue.
    pub queue: Duration,
    /// Messages of its dead-letter queue.
    pub dead_letter_queue: Duration,
    /// How often the sweeper looks.
    pub every: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            executions: 90 * DAY,
            // MessageRetentionPeriod in template.yaml: 345600 and 1209600 seconds.
            queue: 4 * DAY,
            dead_letter_queue: 14 * DAY,
            every: Duration::from_secs(10 * 60),
        }
    }
}

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub executions: u64,
    pub queue_messages: u64,
    pub emails: u64,
    pub topic_messages: u64,
}

impl Swept {
    pub fn is_empty(&self) -> bool {
        *self == Swept::default()
    }

    fn add(&mut self, other: Swept) {
        self.executions += other.executions;
        self.queue_messages += other.queue_messages;
        self.emails += other.emails;
        self.topic_messages += other.topic_messages;
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// One batch of everything past its retention at `now` (ms); the ARNs of the executions
/// removed, and the message ids of the emails removed (their `.eml` copies go too).
fn sweep_batch(
    c: &Connection,
    names: &Names,
    retention: &Retention,
    now: i64,
) -> Result<(Swept, Vec<String>, Vec<String>), DbError> {
    let kept_since = now.saturating_sub(millis(retention.executions));
    // Oldest first along executions_by_start: one that started after the cut-off cannot
    // have stopped before it.
    let executions: Vec<(i64, String)> = c
        .prepare_cached(
            "SELECT rowid, arn FROM executions WHERE start_date < ?1 AND status != 'RUNNING' \
             AND stop_date IS NOT NULL AND stop_date < ?1 ORDER BY start_date LIMIT ?2",
        )?
        .query_map(params![kept_since, BATCH], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (rowid, arn) in &executions {
        c.prepare_cached("DELETE FROM history_events WHERE execution = ?1")?
            .execute([rowid])?;
        // Task effects are keyed `<execution arn>/<state>/<attempt>`.
        c.prepare_cached(
            "DELETE FROM effects WHERE invocation_key >= ?1 || '/' AND invocation_key < ?1 || '0'",
        )?
        .execute([arn])?;
        c.prepare_cached("DELETE FROM executions WHERE rowid = ?1")?
            .execute([rowid])?;
    }
    // The rows of the local inspection tables are in `seq` order, and their times grow
    // with it: the expired ones are a prefix. Finding where it ends reads only that
    // prefix (a condition on the time alone would read the whole table at every sweep).
    let prefix_end = |table: &str, time: &str, cutoff: i64| -> Result<i64, DbError> {
        let end: Option<i64> = c
            .prepare_cached(&format!(
                "SELECT seq FROM {table} WHERE {time} >= ?1 ORDER BY seq LIMIT 1"
            ))?
            .query_row([cutoff], |r| r.get(0))
            .optional()?;
        Ok(end.unwrap_or(i64::MAX))
    };
    let mut queue_messages = 0;
    for (queue, kept) in [
        (&names.queue, retention.queue),
        (&names.dead_letter_queue, retention.dead_letter_queue),
    ] {
        // SQS drops a message its retention period after it was first sent, received or
        // not (queue_visible: the messages not yet deleted only).
        queue_messages +=
            c.prepare_cached(
                "DELETE FROM queue_messages WHERE seq IN (SELECT seq FROM queue_messages \
                 WHERE queue = ?1 AND state = 'AVAILABLE' AND sent_at < ?2 LIMIT ?3)",
            )?
            .execute(params![queue, now.saturating_sub(millis(kept)), BATCH])? as u64;
    }
    // A message received and deleted stays (for `orders queue list`) as long as the
    // executions.
    let end = prefix_end("queue_messages", "sent_at", kept_since)?;
    queue_messages += c
        .prepare_cached(
            "DELETE FROM queue_messages WHERE seq IN (SELECT seq FROM queue_messages \
             WHERE seq < ?1 AND state = 'DELETED' AND done_at < ?2 ORDER BY seq LIMIT ?3)",
        )?
        .execute(params![end, kept_since, BATCH])? as u64;
    let end = prefix_end("mail", "sent_at", kept_since)?;
    let emails: Vec<String> = c
        .prepare_cached(
            "DELETE FROM mail WHERE seq IN (SELECT seq FROM mail WHERE seq < ?1 \
             ORDER BY seq LIMIT ?2) RETURNING message_id",
        )?
        .query_map(params![end, BATCH], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let end = prefix_end("topic_messages", "published_at", kept_since)?;
    let topic_messages = c
        .prepare_cached(
            "DELETE FROM topic_messages WHERE seq IN (SELECT seq FROM topic_messages \
             WHERE seq < ?1 ORDER BY seq LIMIT ?2)",
        )?
        .execute(params![end, BATCH])? as u64;
    let swept = Swept {
        executions: executions.len() as u64,
        queue_messages,
        emails: emails.len() as u64,
        topic_messages,
    };
    Ok((
        swept,
        executions.into_iter().map(|(_, a)| a).collect(),
        emails,
    ))
}

/// Removes everything past its retention at `now` (ms since the epoch), in batches.
pub async fn sweep(
    db: &WorkflowDb,
    names: &Names,
    retention: &Retention,
    mail_dir: Option<&PathBuf>,
    now: i64,
) -> Result<Swept, DbError> {
    let mut total = Swept::default();
    loop {
        let (names, retention) = (names.clone(), *retention);
        let (swept, arns, emails) = db
            .write(move |c| sweep_batch(c, &names, &retention, now))
            .await?;
        db.forget_executions(arns);
        if let Some(dir) = mail_dir {
            for id in &emails {
                let file = dir.join(format!("{id}.eml"));
                if let Err(e) = std::fs::remove_file(&file)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(file = %file.display(), error = %e, "could not remove an expired email's copy");
                }
            }
        }
        let done = swept.executions < BATCH as u64
            && swept.queue_messages < BATCH as u64
            && swept.emails < BATCH as u64
            && swept.topic_messages < BATCH as u64;
        total.add(swept);
        if done {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_retention_is_what_aws_keeps() {
        let r = Retention::default();
        assert_eq!(r.executions.as_secs(), 90 * 24 * 3600);
        assert_eq!(r.queue.as_secs(), 345_600);
        assert_eq!(r.dead_letter_queue.as_secs(), 1_209_600);
    }
}
