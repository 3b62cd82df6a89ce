package ferry.cli;

/** Entry point of {@code bin/ferry}. */
public final class Main {
    private Main() {}

    public static void main(String[] args) {
        System.err.println("usage: ferry run|serve|demo ...");
        System.exit(2);
    }
}
