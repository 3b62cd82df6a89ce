package ferry.cli;

import java.util.Arrays;
import java.util.List;

/** Entry point of {@code bin/ferry}. */
public final class Main {
    private Main() {}

    public static void main(String[] args) {
        List<String> rest = Arrays.asList(args).subList(Math.min(1, args.length), args.length);
        int code = switch (args.length == 0 ? "" : args[0]) {
            case "serve" -> ServeCommand.run(rest, System.out, System.err);
            default -> {
                System.err.println("usage: ferry run|serve|demo ...");
                yield 2;
            }
        };
        System.exit(code);
    }
}
