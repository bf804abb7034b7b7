package waittimes.kstreams;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.EncoderFactory;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Serializer;

/** The workshop's `WaitTimes` value (store_id, wait_time), Confluent-framed with its registry id. */
final class WaitTimesSerializer implements Serializer<WaitProcessor.WaitTime> {
    private final Schema schema;
    private final int schemaId;
    private final GenericDatumWriter<GenericRecord> writer;
    private BinaryEncoder encoder;

    WaitTimesSerializer(Schema schema, int schemaId) {
        this.schema = schema;
        this.schemaId = schemaId;
        this.writer = new GenericDatumWriter<>(schema);
    }

    @Override
    public byte[] serialize(String topic, WaitProcessor.WaitTime value) {
        if (value == null) {
            return null;
        }
        GenericRecord r = new GenericData.Record(schema);
        r.put("store_id", value.storeId());
        r.put("wait_time", value.minutes());
        ByteArrayOutputStream out = new ByteArrayOutputStream(16);
        out.write(0);
        out.writeBytes(ByteBuffer.allocate(4).putInt(schemaId).array());
        encoder = EncoderFactory.get().binaryEncoder(out, encoder);
        try {
            writer.write(r, encoder);
            encoder.flush();
        } catch (IOException e) {
            throw new SerializationException("encoding WaitTimes: " + e.getMessage(), e);
        }
        return out.toByteArray();
    }
}
