package waittimes.kstreams;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;
import org.apache.avro.Schema;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.common.errors.TopicExistsException;
import java.util.Optional;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.utils.AppInfoParser;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StoreQueryParameters;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.QueryableStoreTypes;
import org.apache.kafka.streams.state.ReadOnlyKeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * The waittimes job as a Kafka Streams application. See README.md for the invocation contract
 * the benchmark relies on: one JSON line on stdout when the job is done (or caught up after a
 * restart), logs on stderr.
 */
public final class Main {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final long MINUTE_MS = 60_000;

    private Main() {}

    static long processCpuNs() {
        java.lang.management.OperatingSystemMXBean os = ManagementFactory.getOperatingSystemMXBean();
        if (os instanceof com.sun.management.OperatingSystemMXBean sun) {
            return sun.getProcessCpuTime();
        }
        return 0;
    }

    /** Options; see README.md. */
    static final class Args {
        String bootstrap = env("WAITTIMES_PEER_BOOTSTRAP", "127.0.0.1:9092");
        String registry = env("WAITTIMES_PEER_SCHEMA_REGISTRY", "http://127.0.0.1:8081");
        List<String> inputs = List.of("pizza_orders_avro", "pizza_orders_completed_avro",
                "pizza_orders_cancelled_avro");
        String output = "waittimes_kstreams_avro";
        String applicationId = "waittimes-kstreams-" + System.currentTimeMillis() + "-"
                + ProcessHandle.current().pid();
        String stateDir;
        long expect;
        boolean untilCaughtUp;
        boolean hold;
        double timeoutSecs;
        double windowMin = 30;
        double matchTtlMin = 10;
        double openTtlMin = 120;
        double emitIntervalSecs = 1;
        int threads = 1;

        private static String env(String name, String fallback) {
            String v = System.getenv(name);
            return v == null || v.isEmpty() ? fallback : v;
        }
    }

    static final String USAGE = """
            usage: run.sh [--bootstrap HOST:PORT] [--schema-registry URL]
                          [--input ORDERS,COMPLETED,CANCELLED] [--output TOPIC]
                          [--application-id ID] [--state-dir DIR]
                          (--expect N | --until-caught-up) [--hold] [--timeout SECS]
                          [--window MIN] [--match-ttl MIN] [--open-ttl MIN]
                          [--emit-interval SECS] [--threads N]""";

    static Args parse(String[] argv) {
        Args a = new Args();
        for (int i = 0; i < argv.length; i++) {
            String flag = argv[i];
            if (flag.equals("--help") || flag.equals("-h")) {
                System.out.println(USAGE);
                System.exit(0);
            }
            if (flag.equals("--until-caught-up")) {
                a.untilCaughtUp = true;
                continue;
            }
            if (flag.equals("--hold")) {
                a.hold = true;
                continue;
            }
            if (i + 1 >= argv.length) {
                throw new IllegalArgumentException(flag + " needs a value");
            }
            String v = argv[++i];
            switch (flag) {
                case "--bootstrap" -> a.bootstrap = v;
                case "--schema-registry" -> a.registry = v;
                case "--input" -> {
                    List<String> t = List.of(v.split(","));
                    if (t.size() != 3 || t.stream().anyMatch(String::isBlank)) {
                        throw new IllegalArgumentException("--input takes ORDERS,COMPLETED,CANCELLED");
                    }
                    a.inputs = t;
                }
                case "--output" -> a.output = v;
                case "--application-id", "--group" -> a.applicationId = v;
                case "--state-dir" -> a.stateDir = v;
                case "--expect" -> a.expect = Long.parseLong(v);
                case "--timeout" -> a.timeoutSecs = Double.parseDouble(v);
                case "--window" -> a.windowMin = Double.parseDouble(v);
                case "--match-ttl" -> a.matchTtlMin = Double.parseDouble(v);
                case "--open-ttl" -> a.openTtlMin = Double.parseDouble(v);
                case "--emit-interval" -> a.emitIntervalSecs = Double.parseDouble(v);
                case "--threads" -> a.threads = Integer.parseInt(v);
                default -> throw new IllegalArgumentException("unknown option " + flag);
            }
        }
        if ((a.expect > 0) == a.untilCaughtUp) {
            throw new IllegalArgumentException("give exactly one of --expect N (N > 0) and --until-caught-up");
        }
        if (a.windowMin <= 0 || a.matchTtlMin < 0 || a.openTtlMin <= 0 || a.emitIntervalSecs < 0
                || a.timeoutSecs < 0 || a.threads < 1) {
            throw new IllegalArgumentException(
                    "--window and --open-ttl must be > 0, --match-ttl, --emit-interval, --timeout >= 0, --threads >= 1");
        }
        return a;
    }

    public static void main(String[] argv) throws Exception {
        Args args;
        try {
            args = parse(argv);
        } catch (IllegalArgumentException e) {
            System.err.println("kstreams-peer: " + e.getMessage() + "\n" + USAGE);
            System.exit(2);
            return;
        }
        System.exit(run(args));
    }

    static Schema loadSchema(String name) throws IOException {
        try (var in = Main.class.getResourceAsStream("/schemas/" + name)) {
            if (in == null) {
                throw new IOException("schema " + name + " is not on the classpath");
            }
            return new Schema.Parser().parse(in);
        }
    }

    static <T> Serde<T> serde(Serializer<T> ser, Deserializer<T> de) {
        return Serdes.serdeFrom(ser, de);
    }

    static int run(Args args) throws Exception {
        long processStartMs = ManagementFactory.getRuntimeMXBean().getStartTime();
        Registry registry = new Registry(args.registry);
        int outId = registry.register(args.output + "-value", loadSchema("waittimes.avsc"));
        AtomicLong bad = new AtomicLong();
        Progress progress = new Progress(args.untilCaughtUp);
        boolean tempState = args.stateDir == null;
        Path stateDir = tempState ? Files.createTempDirectory("waittimes-kstreams-state-")
                : Path.of(args.stateDir);

        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, args.applicationId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args.bootstrap);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, args.threads);
        p.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");

        ensureOutput(args);
        Map<TopicPartition, Long> targets = args.untilCaughtUp ? remaining(args) : Map.of();

        WaitProcessor.Settings settings = new WaitProcessor.Settings(
                (long) (args.windowMin * MINUTE_MS), (long) (args.matchTtlMin * MINUTE_MS),
                (long) (args.openTtlMin * MINUTE_MS), (long) (args.emitIntervalSecs * 1000), 60_000);
        Serializer<Event> noEventSer = (topic, v) -> {
            throw new UnsupportedOperationException("input events are never written");
        };
        Deserializer<WaitProcessor.WaitTime> noWaitDe = (topic, b) -> {
            throw new UnsupportedOperationException("the output is never read");
        };

        StreamsBuilder b = new StreamsBuilder();
        b.addStateStore(Stores.keyValueStoreBuilder(
                Stores.persistentKeyValueStore(WaitProcessor.ORDERS), Serdes.Long(), Serdes.ByteArray())
                .withCachingEnabled());
        b.addStateStore(Stores.keyValueStoreBuilder(
                Stores.persistentKeyValueStore(WaitProcessor.STORES), Serdes.Integer(), Serdes.ByteArray())
                .withCachingEnabled());
        b.addStateStore(Stores.keyValueStoreBuilder(
                Stores.persistentKeyValueStore(WaitProcessor.WINDOWS), Serdes.Integer(), Serdes.ByteArray())
                .withCachingEnabled());
        Event.Kind[] kinds = {Event.Kind.PLACED, Event.Kind.COMPLETED, Event.Kind.CANCELLED};
        KStream<String, Event> events = null;
        for (int i = 0; i < 3; i++) {
            KStream<String, Event> s = b.stream(args.inputs.get(i), Consumed.with(Serdes.String(),
                    serde(noEventSer, new EventDeserializer(kinds[i], registry, bad))));
            events = events == null ? s : events.merge(s);
        }
        events.process(() -> new WaitProcessor(settings, progress),
                        WaitProcessor.ORDERS, WaitProcessor.STORES, WaitProcessor.WINDOWS)
                .to(args.output, Produced.with(Serdes.String(),
                        serde(new WaitTimesSerializer(loadSchema("waittimes.avsc"), outId), noWaitDe)));

        KafkaStreams streams = new KafkaStreams(b.build(), p);
        AtomicLong restored = new AtomicLong();
        AtomicLong restoreStartMs = new AtomicLong();
        AtomicLong restoreEndMs = new AtomicLong();
        AtomicLong runningMs = new AtomicLong();
        streams.setGlobalStateRestoreListener(new StateRestoreListener() {
            @Override
            public void onRestoreStart(TopicPartition tp, String store, long start, long end) {
                restoreStartMs.compareAndSet(0, System.currentTimeMillis());
            }

            @Override
            public void onBatchRestored(TopicPartition tp, String store, long endOffset, long n) {
                restored.addAndGet(n);
            }

            @Override
            public void onRestoreEnd(TopicPartition tp, String store, long total) {
                restoreEndMs.set(System.currentTimeMillis());
            }
        });
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.RUNNING) {
                runningMs.compareAndSet(0, System.currentTimeMillis());
            }
        });
        streams.setUncaughtExceptionHandler(e -> {
            System.err.println("kstreams-peer: stream thread failed: " + e);
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.start();

        long deadline = args.timeoutSecs > 0 ? processStartMs + (long) (args.timeoutSecs * 1000) : Long.MAX_VALUE;
        boolean complete = false;
        while (System.currentTimeMillis() < deadline) {
            KafkaStreams.State st = streams.state();
            if (st == KafkaStreams.State.ERROR || st == KafkaStreams.State.NOT_RUNNING
                    || st == KafkaStreams.State.PENDING_SHUTDOWN || st == KafkaStreams.State.PENDING_ERROR) {
                break;
            }
            boolean done = args.untilCaughtUp
                    ? st == KafkaStreams.State.RUNNING && caughtUp(targets, progress)
                    : progress.events.get() >= args.expect;
            if (done && progress.dirty.get() == 0) {
                complete = true;
                break;
            }
            Thread.sleep(5);
        }
        long doneMs = System.currentTimeMillis();
        long doneCpu = processCpuNs();

        Map<String, Object> s = new LinkedHashMap<>();
        s.put("peer", "kafka-streams");
        s.put("version", AppInfoParser.getVersion());
        s.put("events", progress.events.get());
        s.put("bad_records", bad.get());
        long first = progress.firstRecordMs;
        double seconds = first > 0 ? (doneMs - first) / 1000.0 : 0.0;
        s.put("seconds", seconds);
        s.put("cpu_seconds", first > 0 ? (doneCpu - progress.firstRecordCpuNs) / 1e9 : 0.0);
        s.put("cpu_seconds_total", doneCpu / 1e9);
        s.put("events_per_second", seconds > 0 ? progress.events.get() / seconds : 0.0);
        s.put("wall_seconds", (doneMs - processStartMs) / 1000.0);
        s.put("process_start_ms", processStartMs);
        s.put("first_record_ms", first);
        s.put("first_emit_ms", progress.firstEmitMs);
        s.put("running_ms", runningMs.get());
        s.put("done_ms", doneMs);
        s.put("restored_records", restored.get());
        s.put("restore_seconds", restoreStartMs.get() > 0
                ? Math.max(0, restoreEndMs.get() - restoreStartMs.get()) / 1000.0 : 0.0);
        s.put("emitted", progress.emitted.get());
        s.put("rss_bytes", procStatus("VmRSS"));
        s.put("rss_peak_bytes", procStatus("VmHWM"));
        s.put("complete", complete);
        s.put("answers", complete ? answers(streams) : Map.of());
        System.out.println(JSON.writeValueAsString(s));
        System.out.flush();

        if (complete && args.hold) {
            // The bench kills the process (kill -9 is the point); SIGTERM closes it cleanly.
            Runtime.getRuntime().addShutdownHook(new Thread(() -> streams.close(Duration.ofSeconds(30))));
            Thread.sleep(Long.MAX_VALUE);
        }
        streams.close(Duration.ofSeconds(60));
        if (tempState) {
            deleteTree(stateDir);
        }
        return complete ? 0 : 3;
    }

    /**
     * Creates the output topic when absent, with the input's partition count (the broker does
     * not create topics on first write; the sink would wait for it forever).
     */
    private static void ensureOutput(Args args) throws Exception {
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args.bootstrap);
        try (Admin admin = Admin.create(ap)) {
            if (admin.listTopics().names().get().contains(args.output)) {
                return;
            }
            int partitions = admin.describeTopics(List.of(args.inputs.get(0))).allTopicNames().get()
                    .get(args.inputs.get(0)).partitions().size();
            try {
                admin.createTopics(List.of(new NewTopic(args.output, Optional.of(partitions), Optional.empty())))
                        .all().get();
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) {
                    throw e;
                }
            }
        }
    }

    /**
     * Offsets the restarted job must reach: per input partition not yet committed to its end,
     * the end offset.
     */
    private static Map<TopicPartition, Long> remaining(Args args) throws Exception {
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args.bootstrap);
        Map<TopicPartition, Long> targets = new HashMap<>();
        try (Admin admin = Admin.create(ap)) {
            Map<String, TopicDescription> topics = admin.describeTopics(args.inputs).allTopicNames().get();
            Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
            for (TopicDescription d : topics.values()) {
                d.partitions().forEach(pi -> latest.put(new TopicPartition(d.name(), pi.partition()), OffsetSpec.latest()));
            }
            var endOffsets = admin.listOffsets(latest).all().get();
            Map<TopicPartition, OffsetAndMetadata> committed =
                    admin.listConsumerGroupOffsets(args.applicationId).partitionsToOffsetAndMetadata().get();
            endOffsets.forEach((tp, info) -> {
                OffsetAndMetadata c = committed.get(tp);
                long done = c == null ? 0 : c.offset();
                if (info.offset() > done) {
                    targets.put(tp, info.offset());
                }
            });
        }
        return targets;
    }

    private static boolean caughtUp(Map<TopicPartition, Long> targets, Progress progress) {
        for (var t : targets.entrySet()) {
            Long at = progress.positions.get(t.getKey());
            if (at == null || at < t.getValue() - 1) {
                return false;
            }
        }
        return true;
    }

    /** Every store's current answer, read through interactive queries. */
    private static Map<String, Integer> answers(KafkaStreams streams) {
        Map<String, Integer> out = new TreeMap<>(Comparator.comparingInt(Integer::parseInt));
        try {
            ReadOnlyKeyValueStore<Integer, byte[]> w = streams.store(StoreQueryParameters.fromNameAndType(
                    WaitProcessor.WINDOWS, QueryableStoreTypes.keyValueStore()));
            try (KeyValueIterator<Integer, byte[]> it = w.all()) {
                while (it.hasNext()) {
                    KeyValue<Integer, byte[]> kv = it.next();
                    Integer m = WaitProcessor.answer(kv.value);
                    if (m != null) {
                        out.put(Integer.toString(kv.key), m);
                    }
                }
            }
        } catch (RuntimeException e) {
            System.err.println("kstreams-peer: interactive query failed: " + e);
        }
        return out;
    }

    private static long procStatus(String field) {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith(field + ":")) {
                    String[] parts = line.substring(field.length() + 1).trim().split("\\s+");
                    return Long.parseLong(parts[0]) * 1024;
                }
            }
        } catch (IOException | NumberFormatException e) {
            return 0;
        }
        return 0;
    }

    private static void deleteTree(Path root) {
        try (Stream<Path> walk = Files.walk(root)) {
            List<Path> all = new ArrayList<>(walk.toList());
            all.sort(Comparator.reverseOrder());
            for (Path x : all) {
                Files.deleteIfExists(x);
            }
        } catch (IOException e) {
            System.err.println("kstreams-peer: could not remove " + root + ": " + e.getMessage());
        }
    }
}
