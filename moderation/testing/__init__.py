"""Test and demo machinery, kept out of the library proper.

- `broker`: the embedded Kafka-protocol broker (tansu) for one machine;
- `pipeline`: `LocalPipeline`, every pipeline process (broker, database, consumer, worker) on one machine;
- `synthetic`: human prose from installed packages, watermarked text from a bigram LM, simple attacks.

The demo and the test-suite import these; production code never does.
"""
