package waittimes.kstreams;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.avro.Schema;

/**
 * The two calls of the Confluent Schema Registry REST API the job needs: a writer schema by id
 * (cached for the life of the process, as ids are immutable) and registering the output schema.
 * Confluent's client is not on Maven Central; this is what its Avro serde does with them.
 */
final class Registry {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String CONTENT_TYPE = "application/vnd.schemaregistry.v1+json";

    private final String base;
    private final HttpClient http =
            HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
    private final Map<Integer, Schema> byId = new ConcurrentHashMap<>();

    Registry(String url) {
        this.base = url.endsWith("/") ? url.substring(0, url.length() - 1) : url;
    }

    /** The writer schema of `id`; throws (the record is then counted as bad) when unknown. */
    Schema schema(int id) {
        Schema cached = byId.get(id);
        if (cached != null) {
            return cached;
        }
        JsonNode body = call(HttpRequest.newBuilder(URI.create(base + "/schemas/ids/" + id)).GET());
        JsonNode text = body.get("schema");
        if (text == null || !text.isTextual()) {
            throw new RegistryException("schema id " + id + ": no \"schema\" in the answer");
        }
        Schema parsed = new Schema.Parser().parse(text.asText());
        byId.put(id, parsed);
        return parsed;
    }

    /** Registers `schema` under `subject` (idempotent in the registry); returns its id. */
    int register(String subject, Schema schema) {
        String payload;
        try {
            payload = JSON.writeValueAsString(Map.of("schema", schema.toString()));
        } catch (IOException e) {
            throw new RegistryException("encoding the schema: " + e.getMessage());
        }
        JsonNode body = call(HttpRequest.newBuilder(
                        URI.create(base + "/subjects/" + subject + "/versions"))
                .header("Content-Type", CONTENT_TYPE)
                .POST(HttpRequest.BodyPublishers.ofString(payload)));
        JsonNode id = body.get("id");
        if (id == null || !id.canConvertToInt()) {
            throw new RegistryException("registering " + subject + ": no id in " + body);
        }
        byId.put(id.asInt(), schema);
        return id.asInt();
    }

    private JsonNode call(HttpRequest.Builder request) {
        HttpResponse<String> response;
        try {
            response = http.send(
                    request.timeout(Duration.ofSeconds(30)).header("Accept", CONTENT_TYPE).build(),
                    HttpResponse.BodyHandlers.ofString());
        } catch (IOException e) {
            throw new RegistryException(base + ": " + e.getMessage());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new RegistryException(base + ": interrupted");
        }
        if (response.statusCode() / 100 != 2) {
            throw new RegistryException(
                    request.build().uri() + ": HTTP " + response.statusCode() + " " + response.body());
        }
        try {
            return JSON.readTree(response.body());
        } catch (IOException e) {
            throw new RegistryException(request.build().uri() + ": not JSON: " + e.getMessage());
        }
    }

    static final class RegistryException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        RegistryException(String message) {
            super(message);
        }
    }
}
