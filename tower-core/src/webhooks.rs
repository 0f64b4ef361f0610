//! The webhook queue: circuit transitions become `{"text": …}` messages delivered to each URL of
//! the flag's `webhooks`, off the breaker's path, with retries and backoff.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::model::{Action, Flag};
use crate::ports::{Notifier, NotifyError};

/// How many attempts a delivery gets in all (1 + 3 retries).
pub const ATTEMPTS: u32 = 4;

/// Messages waiting to be sent; a full queue drops new ones with a warning rather than slow
/// the breaker down.
const QUEUE: usize = 1024;

/// The text of a transition's message, or `None` for actions that send none. Titles are
/// escaped as Slack's text format requires (`&`, `<`, `>`), so a title cannot mention
/// `<!channel>` or hide a link.
pub fn message(action: Action, flag: &Flag, app_title: &str, why: Option<&str>) -> Option<String> {
    let what = match action {
        Action::CircuitOpen => "has tripped open!",
        Action::CircuitRecovery => "started recovering!",
        Action::CircuitClose => "recovered successfully and closed!",
        _ => return None,
    };
    let (flag, app) = (slack_escape(flag.title.as_str()), slack_escape(app_title));
    Some(match why {
        Some(why) => format!("{flag} in {app} {what} {}", slack_escape(why)),
        None => format!("{flag} in {app} {what}"),
    })
}

/// `&`, `<` and `>` as Slack's message text wants them: the only three it interprets.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The sending side of the queue.
#[derive(Debug, Clone)]
pub(crate) struct WebhookQueue {
    tx: mpsc::Sender<(String, String)>,
}

impl WebhookQueue {
    /// Starts the worker that delivers queued messages through `notifier`.
    pub(crate) fn start(
        notifier: Arc<dyn Notifier>,
        backoff: Duration,
        stats: Arc<crate::stats::Stats>,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<(String, String)>(QUEUE);
        tokio::spawn(async move {
            while let Some((url, text)) = rx.recv().await {
                // Each delivery on its own, so a slow receiver delays nobody else.
                let (notifier, stats) = (Arc::clone(&notifier), Arc::clone(&stats));
                tokio::spawn(deliver(notifier, url, text, backoff, stats));
            }
        });
        Self { tx }
    }

    /// Queues `text` for every URL of `flag`; never waits.
    pub(crate) fn send(&self, flag: &Flag, text: &str) {
        for url in flag.webhooks.urls() {
            if self.tx.try_send((url.to_owned(), text.to_owned())).is_err() {
                tracing::warn!(flag = %flag.id, "webhook queue full; message dropped");
            }
        }
    }
}

async fn deliver(
    notifier: Arc<dyn Notifier>,
    url: String,
    text: String,
    backoff: Duration,
    stats: Arc<crate::stats::Stats>,
) {
    use crate::stats::Delivery;
    for attempt in 1..=ATTEMPTS {
        match notifier.notify(&url, &text).await {
            Ok(()) => {
                tracing::debug!(attempt, "webhook delivered");
                stats.webhook(Delivery::Delivered);
                return;
            }
            Err(NotifyError::Unavailable(e)) if attempt < ATTEMPTS => {
                stats.webhook(Delivery::Retried);
                tracing::debug!(attempt, error = %crate::ErrorChain(&*e), "webhook failed; retrying");
                tokio::time::sleep(backoff * 2u32.pow(attempt - 1)).await;
            }
            Err(e) => {
                // The URL may carry a secret (Slack's do): log only its host.
                let host = crate::redact::host(&url);
                tracing::warn!(host = %host, attempt, error = %crate::ErrorChain(&e), "webhook not delivered");
                stats.webhook(Delivery::Failed);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AppId, Title};
    use crate::time::Timestamp;

    #[test]
    fn messages_follow_the_slack_texts() {
        let f =
            Flag::new(AppId::new(1), Title::parse("new-cart").unwrap(), Timestamp::from_millis(0));
        assert_eq!(
            message(Action::CircuitOpen, &f, "Checkout", None).unwrap(),
            "new-cart in Checkout has tripped open!"
        );
        assert_eq!(
            message(Action::CircuitOpen, &f, "Checkout", Some("412 requests, 61 failures: …"))
                .unwrap(),
            "new-cart in Checkout has tripped open! 412 requests, 61 failures: …"
        );
        assert_eq!(
            message(Action::CircuitRecovery, &f, "Checkout", None).unwrap(),
            "new-cart in Checkout started recovering!"
        );
        assert_eq!(
            message(Action::CircuitClose, &f, "Checkout", None).unwrap(),
            "new-cart in Checkout recovered successfully and closed!"
        );
        assert_eq!(message(Action::FlagOn, &f, "Checkout", None), None);
        let sly = Flag::new(
            AppId::new(1),
            Title::parse("<!channel> & <https://evil.example|your bank>").unwrap(),
            Timestamp::from_millis(0),
        );
        assert_eq!(
            message(Action::CircuitOpen, &sly, "R&D <ops>", None).unwrap(),
            "&lt;!channel&gt; &amp; &lt;https://evil.example|your bank&gt; in R&amp;D &lt;ops&gt; has tripped open!"
        );
    }
}
