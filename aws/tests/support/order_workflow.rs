//! The order workflow deployed to moto: the resources it talks to, the definition with the
//! SAM `DefinitionSubstitutions` filled in, and the input the projector starts it with.
//! Shared by the adapter tests and the root crate's AWS tests (included by path).

use super::moto::{self, ACCOUNT};
use orders_aws::AwsClients;
use orders_domain::envelope::EventEnvelope;
use orders_domain::money::{Currency, Money};
use orders_domain::sample;
use orders_domain::time::Timestamp;
use orders_domain::workflow::WorkflowInput;
use serde_json::Value;

pub const DEFINITION: &str = include_str!("../../../statemachines/order-workflow.asl.json");

/// The workflow's input for a placed order (what the projector starts it with).
pub fn input(order_id: &str) -> WorkflowInput {
    let eur = Currency::parse("EUR").expect("EUR");
    let placed = sample::order_placed(order_id, "c-42", 2, Money::new(1250, eur));
    let envelope = EventEnvelope {
        event_id: super::unique("evt"),
        aggregate_id: order_id.into(),
        version: 1,
        event_type: "OrderPlaced".into(),
        schema_version: 1,
        occurred_at: Timestamp(1_795_706_525_123),
        correlation_id: super::unique("corr"),
        causation_id: "req-1".into(),
        payload: Value::Null,
    };
    WorkflowInput::for_placed(&envelope, &placed)
}

/// The resources the workflow talks to, created on moto.
pub struct MotoResources {
    pub topic_arn: String,
    pub fulfilment_queue_url: String,
    /// Subscribed to the topic: where the customer notification lands.
    pub notification_queue_url: String,
    pub sender: String,
}

impl MotoResources {
    pub fn create() -> Self {
        let topic_arn = moto::create_topic(&super::unique("orders-topic"));
        let fulfilment_queue_url = moto::create_queue(&super::unique("orders-fulfilment"));
        let notifications = super::unique("orders-notifications");
        let notification_queue_url = moto::create_queue(&notifications);
        moto::subscribe_queue(&topic_arn, &notifications);
        let sender = format!("{}@example.com", super::unique("orders"));
        moto::create_email_identity(&sender);
        MotoResources {
            topic_arn,
            fulfilment_queue_url,
            notification_queue_url,
            sender,
        }
    }

    /// Names that resolve to nothing (for tests that never run the workflow through).
    pub fn dummy() -> Self {
        let region = super::region();
        MotoResources {
            topic_arn: format!("arn:aws:sns:{region}:{ACCOUNT}:no-topic"),
            fulfilment_queue_url: format!("https://sqs.{region}.amazonaws.com/{ACCOUNT}/no-queue"),
            notification_queue_url: String::new(),
            sender: "nobody@example.com".into(),
        }
    }

    /// The definition with the SAM `DefinitionSubstitutions` for these resources.
    pub fn definition(&self) -> String {
        let recorder = format!(
            "arn:aws:lambda:{}:{ACCOUNT}:function:orders-recorder",
            super::region()
        );
        let subs = [
            ("OrderTopicArn", self.topic_arn.as_str()),
            ("FulfilmentQueueUrl", self.fulfilment_queue_url.as_str()),
            ("SenderAddress", self.sender.as_str()),
            ("RecorderFunctionArn", recorder.as_str()),
        ];
        let mut out = DEFINITION.to_string();
        for (k, v) in subs {
            out = out.replace(&format!("${{{k}}}"), v);
        }
        let left = out
            .match_indices("${")
            .filter(|(i, _)| out[i + 2..].starts_with(|c: char| c.is_ascii_alphabetic()))
            .count();
        assert_eq!(left, 0, "every placeholder is substituted");
        out
    }
}

/// Deploys the definition (substituted as SAM does) to moto; returns the state machine ARN.
pub async fn deploy(clients: &AwsClients, r: &MotoResources) -> String {
    clients
        .sfn()
        .create_state_machine()
        .name(super::unique("orders"))
        .definition(r.definition())
        .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/orders-workflow"))
        .send()
        .await
        .expect("create the state machine on moto")
        .state_machine_arn()
        .to_string()
}
