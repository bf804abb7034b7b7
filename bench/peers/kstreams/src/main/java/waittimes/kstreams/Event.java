package waittimes.kstreams;

/**
 * One input record after decoding: which topic it came from and the fields the job uses.
 * `rackSecs` / `deliverySecs` are null when the completion does not report them. A record that
 * could not be decoded is {@link #BAD} (counted and skipped, never a crash).
 */
record Event(Kind kind, int storeId, int orderId, Integer rackSecs, Integer deliverySecs) {
    enum Kind {
        PLACED,
        COMPLETED,
        CANCELLED,
        BAD
    }

    static final Event BAD = new Event(Kind.BAD, 0, 0, null, null);
}
