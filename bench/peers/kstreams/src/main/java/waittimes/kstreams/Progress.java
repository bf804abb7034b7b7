package waittimes.kstreams;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.common.TopicPartition;

/** What the stream threads tell the main thread: counts, first-record time, positions. */
final class Progress {
    final AtomicLong events = new AtomicLong();
    final AtomicLong emitted = new AtomicLong();
    /** Stores changed but not yet published (summed over tasks). */
    final AtomicInteger dirty = new AtomicInteger();
    /** Wall clock (ms) and process CPU (ns) when the first record was processed; 0 before. */
    volatile long firstRecordMs;
    volatile long firstRecordCpuNs;
    volatile long firstEmitMs;
    /** Highest processed offset per input partition, kept only when {@link #trackPositions}. */
    final Map<TopicPartition, Long> positions = new ConcurrentHashMap<>();
    final boolean trackPositions;

    Progress(boolean trackPositions) {
        this.trackPositions = trackPositions;
    }

    void processed() {
        if (events.getAndIncrement() == 0) {
            firstRecordMs = System.currentTimeMillis();
            firstRecordCpuNs = Main.processCpuNs();
        }
    }

    void emitted(long ts) {
        if (emitted.getAndIncrement() == 0) {
            firstEmitMs = ts;
        }
    }
}
