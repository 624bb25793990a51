//! Which subtask reads which partition: Flink's `KafkaSourceEnumerator` assignment, so that a
//! topic's partitions are spread evenly over the subtasks, every subtask computes the same
//! answer without talking to the others, and a rescale moves partitions deterministically.
//! Pure.

/// A topic partition, the Kafka source's split.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number, from 0.
    pub partition: i32,
}

impl TopicPartition {
    /// The partition `partition` of `topic`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }

    /// The split id: `topic-partition`, as Flink names Kafka splits.
    pub fn split_id(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}

/// Java's `String.hashCode` (over UTF-16 code units, wrapping), which Flink's assignment
/// starts from.
fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The subtask (of `parallelism`) that reads `tp`: the topic's partitions go round-robin
/// from a start subtask derived from the topic name (`((hash(topic) * 31) & 0x7FFFFFFF) %
/// parallelism`), exactly as Flink's `KafkaSourceEnumerator.getSplitOwner`.
///
/// # Panics
/// When `parallelism` is 0 or `tp.partition` is negative (neither exists).
pub fn owner(tp: &TopicPartition, parallelism: u32) -> u32 {
    assert!(parallelism > 0, "invariant: parallelism is at least 1");
    assert!(
        tp.partition >= 0,
        "invariant: partitions are numbered from 0"
    );
    let p = i64::from(parallelism);
    let start = i64::from(java_string_hash(&tp.topic).wrapping_mul(31) & 0x7FFF_FFFF) % p;
    ((start + i64::from(tp.partition)) % p) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_javas() {
        // "hello".hashCode() == 99162322, "".hashCode() == 0, overflow wraps.
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(
            java_string_hash("a-long-topic-name-that-overflows"),
            "a-long-topic-name-that-overflows"
                .chars()
                .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
        );
    }

    #[test]
    fn partitions_of_a_topic_go_round_robin_from_the_topics_start() {
        let start = owner(&TopicPartition::new("orders", 0), 3);
        for p in 0..9 {
            assert_eq!(
                owner(&TopicPartition::new("orders", p), 3),
                (start + p as u32) % 3
            );
        }
        // Every subtask gets a partition when there are as many partitions as subtasks.
        let mut owners: Vec<u32> = (0..4)
            .map(|p| owner(&TopicPartition::new("t", p), 4))
            .collect();
        owners.sort();
        assert_eq!(owners, vec![0, 1, 2, 3]);
        assert_eq!(owner(&TopicPartition::new("t", 5), 1), 0);
    }
}
