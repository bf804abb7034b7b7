package waittimes.kstreams;

import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.processor.PunctuationType;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * The job's state machine for the stores of one task (one partition of the three co-partitioned
 * input topics), over three persistent key-value stores with changelogs:
 *
 * <ul>
 *   <li>{@code orders}: (store id, order id) to what is known of the order: open since its
 *       placement, a completion or cancellation held for its placement, or a tombstone that makes
 *       redeliveries idempotent. Each entry carries its expiry deadline in the store's stream time
 *       ({@code placed + open_ttl}, or {@code now + match_ttl}); an expired entry reads as absent,
 *       and a wall-clock punctuator deletes expired entries so state stays bounded.
 *   <li>{@code stores}: per store its stream time (largest event time of any topic), the last
 *       published minutes and the time of its oldest observation (so a placement reads the window
 *       only when something slides out).
 *   <li>{@code windows}: per store the wait observations in (stream time - window, stream time],
 *       sorted by completion time.
 * </ul>
 *
 * Semantics are the service's (SPEC.md, src/state/): a completion yields completion - placement
 * when the placement was seen and is not later (and at most open_ttl), otherwise the reported
 * rack + delivery seconds; a completion before its placement enters with its reported durations
 * and is corrected to the measured wait if the placement arrives within match_ttl. A wall-clock
 * punctuator publishes each changed store's p50 (whole minutes) at most once per emit interval.
 */
final class WaitProcessor implements Processor<String, Event, String, WaitProcessor.WaitTime> {
    static final String ORDERS = "orders";
    static final String STORES = "stores";
    static final String WINDOWS = "windows";

    /** An output record's value. */
    record WaitTime(int storeId, int minutes) {}

    /** The job's parameters (the service's `state.*` and `output.emit_interval`). */
    record Settings(long windowMs, long matchTtlMs, long openTtlMs, long emitIntervalMs,
            long purgeIntervalMs) {}

    private static final byte OPEN = 0;
    private static final byte HELD_COMPLETED = 1;
    private static final byte HELD_CANCELLED = 2;
    private static final byte TOMBSTONE = 3;
    private static final int NO_TENTATIVE = -1;
    private static final int NONE = Integer.MIN_VALUE;

    private final Settings cfg;
    private final Progress progress;
    private ProcessorContext<String, WaitTime> context;
    private KeyValueStore<Long, byte[]> orders;
    private KeyValueStore<Integer, byte[]> stores;
    private KeyValueStore<Integer, byte[]> windows;
    private final Set<Integer> dirty = new LinkedHashSet<>();

    WaitProcessor(Settings cfg, Progress progress) {
        this.cfg = cfg;
        this.progress = progress;
    }

    @Override
    public void init(ProcessorContext<String, WaitTime> context) {
        this.context = context;
        this.orders = context.getStateStore(ORDERS);
        this.stores = context.getStateStore(STORES);
        this.windows = context.getStateStore(WINDOWS);
        if (cfg.emitIntervalMs() > 0) {
            context.schedule(Duration.ofMillis(cfg.emitIntervalMs()), PunctuationType.WALL_CLOCK_TIME,
                    t -> emit());
        }
        context.schedule(Duration.ofMillis(cfg.purgeIntervalMs()), PunctuationType.WALL_CLOCK_TIME,
                t -> purge());
    }

    @Override
    public void process(Record<String, Event> record) {
        progress.processed();
        if (progress.trackPositions) {
            context.recordMetadata().ifPresent(this::position);
        }
        Event ev = record.value();
        if (ev == null || ev.kind() == Event.Kind.BAD) {
            return;
        }
        long at = record.timestamp();
        int store = ev.storeId();
        Meta meta = Meta.decode(stores.get(store));
        boolean advanced = meta.streamTime == Long.MIN_VALUE || at > meta.streamTime;
        long now = advanced ? at : meta.streamTime;
        meta.streamTime = now;
        long lo = now - cfg.windowMs();
        Window w = null;
        if (advanced && meta.oldestAt <= lo) {
            w = Window.decode(windows.get(store));
            w.evict(lo);
        }
        long key = ((long) store << 32) | (ev.orderId() & 0xffffffffL);
        Entry e = Entry.decode(orders.get(key));
        if (e != null && e.deadline < now) {
            e = null; // expired in the store's stream time
        }
        switch (ev.kind()) {
            case PLACED -> {
                boolean tooOld = now - at > cfg.openTtlMs();
                if (e == null) {
                    if (!tooOld) {
                        orders.put(key, Entry.open(at, at + cfg.openTtlMs()));
                    }
                } else if (e.type == HELD_CANCELLED && !tooOld) {
                    orders.put(key, Entry.tombstone(now + cfg.matchTtlMs()));
                } else if (e.type == HELD_COMPLETED && !tooOld) {
                    orders.put(key, Entry.tombstone(now + cfg.matchTtlMs()));
                    if (at <= e.time) {
                        w = w != null ? w : Window.decode(windows.get(store));
                        Obs measured = new Obs(e.time, e.time - at, true);
                        if (e.tentativeSecs != NO_TENTATIVE) {
                            w.replace(lo, e.tentativeSecs * 1000L, measured);
                        } else {
                            w.insert(lo, measured);
                        }
                    }
                }
                // Otherwise a duplicate, or a placement too old to be open: nothing changes.
            }
            case COMPLETED -> {
                int reported = reportedSecs(ev.rackSecs(), ev.deliverySecs(), cfg.openTtlMs());
                if (e == null) {
                    orders.put(key, Entry.held(HELD_COMPLETED, at, now + cfg.matchTtlMs(), reported));
                    if (reported != NO_TENTATIVE) {
                        w = w != null ? w : Window.decode(windows.get(store));
                        w.insert(lo, new Obs(at, reported * 1000L, false));
                    }
                } else if (e.type == OPEN) {
                    orders.put(key, Entry.tombstone(now + cfg.matchTtlMs()));
                    long wait = at - e.time;
                    Obs o = null;
                    if (wait >= 0 && wait <= cfg.openTtlMs()) {
                        o = new Obs(at, wait, true);
                    } else if (reported != NO_TENTATIVE) {
                        o = new Obs(at, reported * 1000L, false);
                    }
                    if (o != null) {
                        w = w != null ? w : Window.decode(windows.get(store));
                        w.insert(lo, o);
                    }
                }
            }
            case CANCELLED -> {
                if (e == null) {
                    orders.put(key, Entry.held(HELD_CANCELLED, at, now + cfg.matchTtlMs(), NO_TENTATIVE));
                } else if (e.type == OPEN) {
                    orders.put(key, Entry.tombstone(now + cfg.matchTtlMs()));
                }
            }
            default -> throw new IllegalStateException("unreachable: " + ev.kind());
        }
        if (w != null && w.changed) {
            windows.put(store, w.encode());
            meta.oldestAt = w.oldest();
            if (dirty.add(store)) {
                progress.dirty.incrementAndGet();
            }
            if (cfg.emitIntervalMs() == 0) {
                emit();
            }
        }
        if (advanced || (w != null && w.changed)) {
            stores.put(store, meta.encode());
        }
    }

    private void position(RecordMetadata m) {
        progress.positions.merge(new TopicPartition(m.topic(), m.partition()), m.offset(), Math::max);
    }

    /** Publishes every changed store whose answer differs from what it last published. */
    private void emit() {
        if (dirty.isEmpty()) {
            return;
        }
        long ts = System.currentTimeMillis();
        for (int store : dirty) {
            Integer minutes = answer(windows.get(store));
            Meta meta = Meta.decode(stores.get(store));
            if (minutes != null && minutes != meta.published) {
                meta.published = minutes;
                stores.put(store, meta.encode());
                context.forward(new Record<>(Integer.toString(store), new WaitTime(store, minutes), ts));
                progress.emitted(ts);
            }
        }
        progress.dirty.addAndGet(-dirty.size());
        dirty.clear();
    }

    /** Deletes entries past their deadline in their store's stream time (bounded state). */
    private void purge() {
        Map<Integer, Long> streamTimes = new HashMap<>();
        List<Long> expired = new ArrayList<>();
        try (KeyValueIterator<Long, byte[]> it = orders.all()) {
            while (it.hasNext()) {
                KeyValue<Long, byte[]> kv = it.next();
                int store = (int) (kv.key >> 32);
                long now = streamTimes.computeIfAbsent(store, s -> Meta.decode(stores.get(s)).streamTime);
                Entry e = Entry.decode(kv.value);
                if (e != null && e.deadline < now) {
                    expired.add(kv.key);
                }
            }
        }
        for (long k : expired) {
            orders.delete(k);
        }
    }

    /** The store's published answer from its window: p50 in whole minutes; null when empty. */
    static Integer answer(byte[] window) {
        long[] waits = Window.decode(window).waits();
        if (waits.length == 0) {
            return null;
        }
        Arrays.sort(waits);
        double h = (waits.length - 1) * 0.5;
        int lo = (int) Math.floor(h);
        double frac = h - lo;
        double ms = frac == 0.0 ? waits[lo] : waits[lo] + frac * (waits[lo + 1] - waits[lo]);
        return (int) Math.max(0, Math.round(ms / 60_000.0));
    }

    /** rack + delivery seconds when both are present, non-negative, 0 < sum <= open_ttl. */
    static int reportedSecs(Integer rack, Integer delivery, long openTtlMs) {
        if (rack == null || delivery == null || rack < 0 || delivery < 0) {
            return NO_TENTATIVE;
        }
        long secs = (long) rack + delivery;
        if (secs == 0 || secs * 1000 > openTtlMs) {
            return NO_TENTATIVE;
        }
        return (int) secs;
    }

    /** An `orders` value: type, time (placement or held event), deadline, tentative seconds. */
    static final class Entry {
        byte type;
        long time;
        long deadline;
        int tentativeSecs;

        static byte[] open(long placedAt, long deadline) {
            return ByteBuffer.allocate(17).put(OPEN).putLong(placedAt).putLong(deadline).array();
        }

        static byte[] held(byte type, long at, long deadline, int tentativeSecs) {
            return ByteBuffer.allocate(21).put(type).putLong(at).putLong(deadline)
                    .putInt(tentativeSecs).array();
        }

        static byte[] tombstone(long deadline) {
            return ByteBuffer.allocate(17).put(TOMBSTONE).putLong(0).putLong(deadline).array();
        }

        static Entry decode(byte[] raw) {
            if (raw == null) {
                return null;
            }
            ByteBuffer b = ByteBuffer.wrap(raw);
            Entry e = new Entry();
            e.type = b.get();
            e.time = b.getLong();
            e.deadline = b.getLong();
            e.tentativeSecs = b.remaining() >= 4 ? b.getInt() : NO_TENTATIVE;
            return e;
        }
    }

    /** A `stores` value. */
    static final class Meta {
        long streamTime = Long.MIN_VALUE;
        int published = NONE;
        long oldestAt = Long.MAX_VALUE;

        static Meta decode(byte[] raw) {
            Meta m = new Meta();
            if (raw != null) {
                ByteBuffer b = ByteBuffer.wrap(raw);
                m.streamTime = b.getLong();
                m.published = b.getInt();
                m.oldestAt = b.getLong();
            }
            return m;
        }

        byte[] encode() {
            return ByteBuffer.allocate(20).putLong(streamTime).putInt(published).putLong(oldestAt).array();
        }
    }

    record Obs(long at, long waitMs, boolean measured) {}

    /**
     * A `windows` value: observations of 17 bytes each (time, wait ms, measured flag), sorted by
     * time, ties in arrival order. Worked on as bytes: the common cases (append at the back,
     * slide at the front) are one array copy, with no object per observation.
     */
    static final class Window {
        private static final int SIZE = 17;
        private byte[] data;
        boolean changed;

        private Window(byte[] data) {
            this.data = data;
        }

        static Window decode(byte[] raw) {
            return new Window(raw == null ? new byte[0] : raw);
        }

        byte[] encode() {
            return data;
        }

        int size() {
            return data.length / SIZE;
        }

        private long at(int i) {
            return ByteBuffer.wrap(data).getLong(i * SIZE);
        }

        long oldest() {
            return data.length == 0 ? Long.MAX_VALUE : at(0);
        }

        long[] waits() {
            ByteBuffer b = ByteBuffer.wrap(data);
            long[] out = new long[size()];
            for (int i = 0; i < out.length; i++) {
                out[i] = b.getLong(i * SIZE + 8);
            }
            return out;
        }

        /** Drops everything at or before `lo`. */
        void evict(long lo) {
            int n = size();
            int cut = 0;
            while (cut < n && at(cut) <= lo) {
                cut++;
            }
            if (cut > 0) {
                data = Arrays.copyOfRange(data, cut * SIZE, data.length);
                changed = true;
            }
        }

        /** Adds `o` after every entry at or before its time, unless it is already outside. */
        void insert(long lo, Obs o) {
            if (o.at() <= lo) {
                return;
            }
            int pos = size();
            while (pos > 0 && at(pos - 1) > o.at()) {
                pos--;
            }
            byte[] next = new byte[data.length + SIZE];
            System.arraycopy(data, 0, next, 0, pos * SIZE);
            System.arraycopy(data, pos * SIZE, next, (pos + 1) * SIZE, data.length - pos * SIZE);
            put(next, pos, o);
            data = next;
            changed = true;
        }

        /** Replaces the tentative (reported) observation of the same time, else inserts. */
        void replace(long lo, long oldWaitMs, Obs o) {
            ByteBuffer b = ByteBuffer.wrap(data);
            for (int i = 0; i < size(); i++) {
                if (b.getLong(i * SIZE) == o.at() && b.getLong(i * SIZE + 8) == oldWaitMs
                        && b.get(i * SIZE + 16) == 0) {
                    data = data.clone(); // the store's cache may hold this very array
                    put(data, i, o);
                    changed = true;
                    return;
                }
            }
            insert(lo, o);
        }

        private static void put(byte[] into, int i, Obs o) {
            ByteBuffer.wrap(into).putLong(i * SIZE, o.at()).putLong(i * SIZE + 8, o.waitMs())
                    .put(i * SIZE + 16, (byte) (o.measured() ? 1 : 0));
        }
    }
}
