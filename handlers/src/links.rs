//! Where `workflow.console_url` in `GET /orders/{id}` points: computed when the API renders
//! a view, never stored, because the read model is the same locally and on AWS.

use orders_aws::sfn;

/// The API's link policy for an order's workflow execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleLinks {
    /// `orders serve`: the local console, e.g. `http://127.0.0.1:3000`.
    Local { base_url: String },
    /// On AWS: the Step Functions console page of the execution.
    Aws { state_machine_arn: String },
    /// No console to link to (the local runtime without the workflow, tests).
    Off,
}

impl ConsoleLinks {
    /// The local console of a server bound to `addr`; an unspecified address (0.0.0.0,
    /// [::]) is not a place a browser can go, so it becomes the loopback address.
    pub fn local(addr: std::net::SocketAddr) -> ConsoleLinks {
        let ip = match addr.ip() {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
                std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
            }
            std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
                std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
            }
            ip => ip,
        };
        ConsoleLinks::Local {
            base_url: format!("http://{}", std::net::SocketAddr::new(ip, addr.port())),
        }
    }

    /// The console page of one execution, if there is one to link to.
    pub fn execution_url(&self, execution_name: &str) -> Option<String> {
        match self {
            ConsoleLinks::Local { base_url } => Some(format!(
                "{}/console/executions/{}",
                base_url.trim_end_matches('/'),
                encode_segment(execution_name)
            )),
            ConsoleLinks::Aws { state_machine_arn } => {
                sfn::execution_arn(state_machine_arn, execution_name)
                    .and_then(|arn| sfn::console_url_for(&arn))
            }
            ConsoleLinks::Off => None,
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters: one URL path segment or
/// query value (execution names are order ids, so for them this is belt and braces).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_links_go_to_the_step_functions_console_page_of_the_execution() {
        let links = ConsoleLinks::Aws {
            state_machine_arn: "arn:aws:states:eu-west-1:123456789012:stateMachine:orders-wf"
                .into(),
        };
        assert_eq!(
            links.execution_url("01JORDER").as_deref(),
            Some(
                "https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/arn:aws:states:eu-west-1:123456789012:execution:orders-wf:01JORDER"
            )
        );
        let broken = ConsoleLinks::Aws {
            state_machine_arn: "not-an-arn".into(),
        };
        assert_eq!(broken.execution_url("01JORDER"), None);
    }

    #[test]
    fn local_links_go_to_the_local_console_on_a_reachable_address() {
        let links = ConsoleLinks::local("0.0.0.0:3000".parse().unwrap());
        assert_eq!(
            links.execution_url("01J/x y").as_deref(),
            Some("http://127.0.0.1:3000/console/executions/01J%2Fx%20y")
        );
        let v6 = ConsoleLinks::local("[::]:8080".parse().unwrap());
        assert_eq!(
            v6.execution_url("a").as_deref(),
            Some("http://[::1]:8080/console/executions/a")
        );
        assert_eq!(ConsoleLinks::Off.execution_url("a"), None);
    }
}
