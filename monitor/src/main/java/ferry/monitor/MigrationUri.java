package ferry.monitor;

/**
 * Where {@code migrate} sends the VM: a TCP peer. Written {@code tcp:HOST:PORT} (QEMU's form) or
 * {@code tcp://HOST:PORT} (the form QEMU 7.2 refuses but older guides use); an IPv6 host goes in
 * brackets, {@code tcp:[::1]:4444}. {@code host} is kept without brackets.
 *
 * @param host name or address, as given ({@code 0} is kept as {@code 0}: the caller resolves it)
 * @param port 1..65535
 */
public record MigrationUri(String host, int port) {
    public MigrationUri {
        if (host == null || host.isEmpty()) {
            throw new IllegalArgumentException("migration URI has no host");
        }
        if (port < 1 || port > 65535) {
            throw new IllegalArgumentException("migration URI port must be 1..65535: " + port);
        }
    }

    /**
     * Parses {@code tcp:HOST:PORT} or {@code tcp://HOST:PORT}.
     *
     * @throws IllegalArgumentException with a one-line reason naming the text
     */
    public static MigrationUri parse(String text) {
        String rest;
        if (text.startsWith("tcp://")) {
            rest = text.substring("tcp://".length());
        } else if (text.startsWith("tcp:")) {
            rest = text.substring("tcp:".length());
        } else {
            int colon = text.indexOf(':');
            String scheme = colon < 0 ? text : text.substring(0, colon);
            throw new IllegalArgumentException("unsupported migration URI '" + text + "': scheme '" + scheme
                    + "' is not supported, use tcp:HOST:PORT");
        }
        String host;
        String port;
        if (rest.startsWith("[")) {
            int close = rest.indexOf(']');
            if (close < 0 || close + 1 >= rest.length() || rest.charAt(close + 1) != ':') {
                throw new IllegalArgumentException("invalid migration URI '" + text + "': expected tcp:[IPV6]:PORT");
            }
            host = rest.substring(1, close);
            port = rest.substring(close + 2);
        } else {
            int colon = rest.lastIndexOf(':');
            if (colon < 0) {
                throw new IllegalArgumentException("invalid migration URI '" + text + "': no port, expected tcp:HOST:PORT");
            }
            host = rest.substring(0, colon);
            port = rest.substring(colon + 1);
            if (host.indexOf(':') >= 0) {
                throw new IllegalArgumentException("invalid migration URI '" + text
                        + "': an IPv6 host goes in brackets, tcp:[" + host + "]:" + port);
            }
        }
        if (host.isEmpty()) {
            throw new IllegalArgumentException("invalid migration URI '" + text + "': no host");
        }
        if (port.isEmpty() || port.length() > 5 || !port.chars().allMatch(c -> c >= '0' && c <= '9')) {
            throw new IllegalArgumentException("invalid migration URI '" + text + "': port '" + port + "' is not a number");
        }
        int portNumber = Integer.parseInt(port);
        if (portNumber < 1 || portNumber > 65535) {
            throw new IllegalArgumentException("invalid migration URI '" + text + "': port must be 1..65535, not " + port);
        }
        return new MigrationUri(host, portNumber);
    }

    /** QEMU's spelling, {@code tcp:HOST:PORT}, with brackets around an IPv6 host. */
    @Override
    public String toString() {
        return "tcp:" + (host.indexOf(':') >= 0 ? "[" + host + "]" : host) + ":" + port;
    }
}
