package waittimes.kstreams;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.kafka.common.serialization.Deserializer;

/**
 * Confluent-framed Avro (0x00, 4-byte big-endian schema id, Avro binary) to an {@link Event}.
 * Reads with the writer's schema and takes fields by name, as Confluent's generic Avro serde
 * does, so a writer's record name or extra fields never matter; ksqlDB's upper-case column
 * names are accepted too. Anything undecodable becomes {@link Event#BAD} and is counted.
 */
final class EventDeserializer implements Deserializer<Event> {
    private final Event.Kind kind;
    private final Registry registry;
    private final AtomicLong bad;
    private final Map<Integer, GenericDatumReader<GenericRecord>> readers = new ConcurrentHashMap<>();
    private BinaryDecoder decoder;
    private GenericRecord reuse;

    EventDeserializer(Event.Kind kind, Registry registry, AtomicLong bad) {
        this.kind = kind;
        this.registry = registry;
        this.bad = bad;
    }

    @Override
    public Event deserialize(String topic, byte[] data) {
        if (data == null || data.length < 5 || data[0] != 0) {
            return bad(topic, "not Confluent-framed Avro");
        }
        int id = ByteBuffer.wrap(data, 1, 4).getInt();
        try {
            GenericDatumReader<GenericRecord> reader = readers.get(id);
            if (reader == null) {
                Schema writer = registry.schema(id);
                reader = new GenericDatumReader<>(writer);
                readers.put(id, reader);
            }
            decoder = DecoderFactory.get().binaryDecoder(data, 5, data.length - 5, decoder);
            GenericRecord r = reader.read(reuse, decoder);
            reuse = r;
            Integer store = intField(r, "store_id");
            Integer order = intField(r, "store_order_id");
            if (store == null || order == null) {
                return bad(topic, "no int store_id / store_order_id");
            }
            if (kind == Event.Kind.COMPLETED) {
                return new Event(kind, store, order,
                        intField(r, "rack_time_secs"), intField(r, "order_delivery_time_secs"));
            }
            return new Event(kind, store, order, null, null);
        } catch (IOException | RuntimeException e) {
            return bad(topic, e.toString());
        }
    }

    private static Integer intField(GenericRecord r, String name) {
        Schema.Field f = r.getSchema().getField(name);
        if (f == null) {
            f = r.getSchema().getField(name.toUpperCase(java.util.Locale.ROOT));
        }
        if (f == null) {
            return null;
        }
        Object v = r.get(f.pos());
        return v instanceof Integer i ? i : null;
    }

    private Event bad(String topic, String why) {
        if (bad.incrementAndGet() <= 10) {
            System.err.println("kstreams-peer: skipping an undecodable record on " + topic + ": " + why);
        }
        return Event.BAD;
    }
}
