"""The consumer's processing steps, one job each, in the order a message meets them (after getsentry/arroyo):

    decode      -> bytes to a valid post, or a rejection with its reason        (decode.py)
    batch       -> valid posts grouped by count, bytes and age                  (batch.py)
    dispatch    -> batches sent to the workers; completion read from receipts  (dispatch.py)
    dead_letter -> rejections written to the dead-letter topic, bounded size   (dead_letter.py)
    flow        -> which partitions to pause: back-pressure, never a sleep      (flow.py)
    commit      -> the offsets below which everything is durable               (commit.py)

Each step takes its collaborators (a send function, a clock, a query) as arguments, so the unit tests
drive it with fakes; workers/consumer.py composes them around a real KafkaConsumer.
"""

Position = tuple[str, int, int]  # topic, partition, offset
PartitionKey = tuple[str, int]  # topic, partition
