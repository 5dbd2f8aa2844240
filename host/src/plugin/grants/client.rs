//! `capabilities.sampling`, `elicitation` and `roots`: what a plugin may ask of the client
//! mid-call. There is no host ceiling (the client decides whether to answer) and nothing to
//! wire into WASI: the grant is checked on what a call returns.

use crate::call::InputRequest;

/// Client round-trips the plugin may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct ClientGrants {
    pub sampling: bool,
    pub elicitation: bool,
    pub roots: bool,
}

impl ClientGrants {
    /// `Err(capability)` when `request` needs a round-trip the manifest does not grant.
    pub(crate) fn check(&self, request: &InputRequest) -> Result<(), &'static str> {
        let (granted, capability) = match request {
            InputRequest::Sampling(_) => (self.sampling, "sampling"),
            InputRequest::Elicitation(_) => (self.elicitation, "elicitation"),
            InputRequest::Roots => (self.roots, "roots"),
        };
        if granted { Ok(()) } else { Err(capability) }
    }

    pub(super) fn describe(&self, out: &mut Vec<String>) {
        for (granted, name) in [(self.sampling, "sampling"), (self.elicitation, "elicitation"), (self.roots, "roots")] {
            if granted {
                out.push(name.to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ClientGrants;
    use crate::call::InputRequest;

    #[test]
    fn only_granted_round_trips_pass() {
        let requests = [
            InputRequest::Sampling(serde_json::json!({})),
            InputRequest::Elicitation(serde_json::json!({})),
            InputRequest::Roots,
        ];
        let none = ClientGrants::default();
        let refused: Vec<_> = requests.iter().filter_map(|r| none.check(r).err()).collect();
        assert_eq!(refused, ["sampling", "elicitation", "roots"]);
        let sampling = ClientGrants { sampling: true, ..ClientGrants::default() };
        assert_eq!(sampling.check(&requests[0]), Ok(()));
        assert_eq!(sampling.check(&requests[1]), Err("elicitation"));
        assert_eq!(sampling.check(&requests[2]), Err("roots"));
        let mut described = Vec::new();
        ClientGrants { sampling: true, elicitation: false, roots: true }.describe(&mut described);
        assert_eq!(described, ["sampling", "roots"]);
    }
}
