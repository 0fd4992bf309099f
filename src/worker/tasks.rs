//! What becomes of each task of a batch once its claim and deliveries are done: the one
//! place that decides whether a task is acknowledged, kept pending or put off.

use std::collections::{HashMap, HashSet};

use time::OffsetDateTime;
use uuid::Uuid;

use crate::queue::{Delivery, Task};
use crate::store::Waiting;

/// The tasks of one batch, sorted by what happens to them.
#[derive(Debug, Default)]
pub(crate) struct TaskPlan {
    /// Done with: acknowledged now.
    pub ack: Vec<Delivery>,
    /// Came before their message's retry was due: scheduled again for that time, then
    /// acknowledged (left pending if the scheduling fails, so they come back).
    pub later: Vec<(Delivery, Task, OffsetDateTime)>,
}

/// Sorts a batch's tasks.
///
/// - A task whose entry could not be read is acknowledged (there is nothing to deliver).
/// - A claimed message's task is acknowledged once its outcome is recorded (`applied`);
///   otherwise it stays pending and comes back after the visibility timeout.
/// - An unclaimed message another worker holds keeps its task pending as insurance: if that
///   worker dies, the task is reclaimed; if it finishes, its acknowledgement clears the task.
/// - An unclaimed retry not yet due is put off until it is: the task was let out early by a
///   clock ahead of the database's, and acknowledging it would leave the retry to the sweeper.
/// - Any other unclaimed message (finished, canceled, unknown) needs nothing more.
pub(crate) fn plan_tasks(
    deliveries: Vec<Delivery>,
    claimed: &HashSet<Uuid>,
    applied: &HashSet<Uuid>,
    waiting: &HashMap<Uuid, Waiting>,
) -> TaskPlan {
    let mut plan = TaskPlan::default();
    for delivery in deliveries {
        let Some(id) = delivery.message_id else {
            plan.ack.push(delivery);
            continue;
        };
        if claimed.contains(&id) {
            if applied.contains(&id) {
                plan.ack.push(delivery);
            }
            continue;
        }
        match waiting.get(&id) {
            Some(Waiting::Held) => {}
            Some(Waiting::DueAt(at)) => {
                let task = Task {
                    message_id: id,
                    kind: delivery.kind,
                };
                plan.later.push((delivery, task, *at));
            }
            None => plan.ack.push(delivery),
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MessageType;

    fn delivery(id: Option<Uuid>) -> Delivery {
        Delivery {
            kind: MessageType::Sms,
            entry_id: format!("{}-0", id.map_or(0, |u| u.as_u128() as u64 % 1000)),
            message_id: id,
        }
    }

    fn ids(deliveries: &[Delivery]) -> Vec<Option<Uuid>> {
        deliveries.iter().map(|d| d.message_id).collect()
    }

    #[test]
    fn each_task_goes_where_its_message_stands() {
        let [sent, unsettled, held, early, finished] = [(); 5].map(|()| Uuid::now_v7());
        let due = OffsetDateTime::now_utc() + time::Duration::seconds(2);
        let claimed = HashSet::from([sent, unsettled]);
        let applied = HashSet::from([sent]);
        let waiting = HashMap::from([(held, Waiting::Held), (early, Waiting::DueAt(due))]);
        let batch = [
            None,
            Some(sent),
            Some(unsettled),
            Some(held),
            Some(early),
            Some(finished),
        ]
        .map(delivery)
        .to_vec();

        let plan = plan_tasks(batch, &claimed, &applied, &waiting);

        assert_eq!(ids(&plan.ack), vec![None, Some(sent), Some(finished)]);
        assert_eq!(plan.later.len(), 1, "{:?}", plan.later);
        let (d, task, at) = &plan.later[0];
        assert_eq!(
            (d.message_id, task.message_id, *at),
            (Some(early), early, due)
        );
        assert_eq!(task.kind, MessageType::Sms);
    }

    #[test]
    fn a_claimed_message_is_never_put_off_whatever_the_store_says() {
        // A claim wins over a stale answer about the same id.
        let id = Uuid::now_v7();
        let due = OffsetDateTime::now_utc();
        let claimed = HashSet::from([id]);
        let waiting = HashMap::from([(id, Waiting::DueAt(due))]);
        let plan = plan_tasks(vec![delivery(Some(id))], &claimed, &claimed, &waiting);
        assert_eq!(ids(&plan.ack), vec![Some(id)]);
        assert!(plan.later.is_empty());
    }
}
