package ferry.migration;

/** Where a migration is (or was when it failed); errors name it. */
public enum Phase {
    HANDSHAKE("handshake"), BULK_COPY("bulk"), ITERATE("dirty pass"), RAM("ram"),
    SWITCHOVER("switchover"), COMPLETE("complete"),
    /** The link dropped; the source reconnects on its own (DESIGN.md "Resume"). */
    RETRY("retrying"),
    /** After a reconnect: what the destination lacks (unconfirmed and unsent granules, guest writes since). */
    RESUME("resume pass");

    private final String label;

    Phase(String label) {
        this.label = label;
    }

    /** Short lower-case label for {@code info migrate}. */
    public String label() {
        return label;
    }
}
