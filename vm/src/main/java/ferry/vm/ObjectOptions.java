package ferry.vm;

import ferry.migration.MigrationParameters;
import ferry.tls.TlsEndpoint;
import ferry.vm.VmConfigParser.BadOptionException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * {@code ferry run}'s {@code -object} and {@code -global migration.*} options, for {@link VmConfigParser}:
 * QEMU's syntax, read into {@link VmObject}s and the starting {@link MigrationParameters}. The TLS types
 * are read with QEMU's defaults; a property Ferry does not know is refused rather than ignored, since a
 * security setting silently dropped would weaken the stream.
 *
 * <p>Stateless; any thread.
 */
final class ObjectOptions {
    private ObjectOptions() {}

    /** {@code -object TYPE,id=ID,...} (QEMU's key=value form; its JSON form is refused). */
    static VmObject object(String spec) throws BadOptionException {
        if (spec.startsWith("{")) {
            throw new BadOptionException("-object " + spec + ": the JSON form is not supported; write -object TYPE,id=ID,KEY=VALUE...");
        }
        Map<String, String> props = VmConfigParser.properties(spec, "qom-type", "-object");
        String type = props.remove("qom-type");
        String id = props.remove("id");
        if (type == null || type.isEmpty()) {
            throw new BadOptionException("-object " + spec + ": the type comes first (e.g. tls-creds-x509,id=tls0,...)");
        }
        if (id == null || !MigrationParameters.OBJECT_ID.matcher(id).matches()) {
            throw new BadOptionException("-object " + spec + ": id= is required and must start with a letter (letters, digits, - . _)");
        }
        String context = "-object " + type + ",id=" + id;
        return switch (type) {
            case "tls-creds-x509" -> tlsCredsX509(id, props, context);
            case "authz-simple" -> {
                String identity = props.remove("identity");
                if (identity == null || identity.isEmpty()) {
                    throw new BadOptionException(context + ": identity= is required (the client certificate's DN,"
                            + " most significant part first, e.g. identity=O=Example,,CN=src.example: a comma in a value is written ,,)");
                }
                noMore(props, context);
                yield new VmObject.AuthzSimple(id, identity);
            }
            case "authz-list-file" -> {
                String file = props.remove("filename");
                if (file == null || file.isEmpty()) {
                    throw new BadOptionException(context + ": filename= is required (QEMU's JSON rule file)");
                }
                boolean refresh = bool(props.remove("refresh"), true, context + ": refresh");
                noMore(props, context);
                yield new VmObject.AuthzListFile(id, Path.of(file).toAbsolutePath(), refresh);
            }
            case "tls-creds-psk", "tls-creds-anon" -> throw new BadOptionException(context + ": Ferry's migration stream"
                    + " authenticates with certificates only: use tls-creds-x509");
            case "authz-list", "authz-pam" -> throw new BadOptionException(context + ": not supported; use authz-simple or"
                    + " authz-list-file");
            default -> new VmObject.Qemu(type, id, spec);
        };
    }

    private static VmObject.TlsCredsX509 tlsCredsX509(String id, Map<String, String> props, String context) throws BadOptionException {
        if (props.containsKey("passwordid")) {
            throw new BadOptionException(context + ": passwordid= (an encrypted key) is not supported: give an"
                    + " unencrypted key file readable only by this user");
        }
        if (props.containsKey("priority")) {
            throw new BadOptionException(context + ": priority= is a GnuTLS priority string; Ferry always uses TLS 1.3"
                    + " with JSSE's default suites");
        }
        String dir = props.remove("dir");
        if (dir == null || dir.isEmpty()) {
            throw new BadOptionException(context + ": dir= is required (the directory holding ca-cert.pem ...)");
        }
        TlsEndpoint endpoint;
        try {
            endpoint = TlsEndpoint.parse(props.getOrDefault("endpoint", "client"));
        } catch (IllegalArgumentException e) {
            throw new BadOptionException(context + ": " + e.getMessage());
        }
        props.remove("endpoint");
        boolean verifyPeer = bool(props.remove("verify-peer"), true, context + ": verify-peer");
        boolean sanityCheck = bool(props.remove("sanity-check"), true, context + ": sanity-check");
        String loaded = props.remove("loaded");
        if (loaded != null && !VmConfigParser.isTrue(loaded)) {
            throw new BadOptionException(context + ": loaded=" + loaded + " is not supported (credentials load at start)");
        }
        noMore(props, context);
        return new VmObject.TlsCredsX509(id, Path.of(dir), endpoint, verifyPeer, sanityCheck);
    }

    private static boolean bool(String value, boolean otherwise, String context) throws BadOptionException {
        if (value == null) {
            return otherwise;
        }
        if (!VmConfigParser.isTrue(value) && !VmConfigParser.isFalse(value)) {
            throw new BadOptionException(context + "=" + value + " is not a boolean (on, off)");
        }
        return VmConfigParser.isTrue(value);
    }

    private static void noMore(Map<String, String> props, String context) throws BadOptionException {
        if (!props.isEmpty()) {
            throw new BadOptionException(context + ": unknown propert" + (props.size() == 1 ? "y " : "ies ")
                    + String.join(", ", props.keySet()));
        }
    }

    /**
     * {@code -global migration.tls-creds=ID} (and {@code tls-hostname}, {@code tls-authz}): QEMU's way to
     * set a migration parameter on the command line, and with {@code -incoming tcp:0:PORT} the one-line
     * form of a TLS destination. Other {@code -global}s are QEMU's device properties: pass them with
     * {@code --qemu-arg}.
     */
    static MigrationParameters global(String spec, MigrationParameters parameters) throws BadOptionException {
        int dot = spec.indexOf('.');
        int equals = spec.indexOf('=');
        if (dot < 0 || equals < dot) {
            throw new BadOptionException("-global " + spec + ": expected DRIVER.PROPERTY=VALUE");
        }
        String driver = spec.substring(0, dot);
        String property = spec.substring(dot + 1, equals);
        String value = spec.substring(equals + 1);
        if (!driver.equals("migration")) {
            throw new BadOptionException("-global " + spec + ": Ferry reads only migration.tls-creds, migration.tls-hostname and"
                    + " migration.tls-authz; pass device properties to QEMU with --qemu-arg -global --qemu-arg " + spec);
        }
        try {
            return switch (property) {
                case "tls-creds" -> parameters.withTlsCreds(value);
                case "tls-hostname" -> parameters.withTlsHostname(value);
                case "tls-authz" -> parameters.withTlsAuthz(value);
                default -> throw new BadOptionException("-global " + spec + ": unsupported migration property " + property
                        + " (tls-creds, tls-hostname, tls-authz; the others are set in the monitor with migrate_set_parameter)");
            };
        } catch (IllegalArgumentException e) {
            throw new BadOptionException("-global " + spec + ": " + e.getMessage());
        }
    }

    /** Ids are unique across all objects; the migration parameters name objects of the right type. */
    static void check(List<VmObject> objects, MigrationParameters parameters) throws BadOptionException {
        Map<String, VmObject> byId = new LinkedHashMap<>();
        for (VmObject object : objects) {
            if (byId.putIfAbsent(object.id(), object) != null) {
                throw new BadOptionException("-object id=" + object.id() + ": attempt to add duplicate property '" + object.id()
                        + "' (ids of -objects must be unique)");
            }
        }
        if (!parameters.tlsCreds().isEmpty() && !(byId.get(parameters.tlsCreds()) instanceof VmObject.TlsCredsX509)) {
            throw new BadOptionException("-global migration.tls-creds=" + parameters.tlsCreds() + ": No TLS credentials with id '"
                    + parameters.tlsCreds() + "' (give -object tls-creds-x509,id=" + parameters.tlsCreds() + ",...)");
        }
        if (!parameters.tlsAuthz().isEmpty() && !(byId.get(parameters.tlsAuthz()) instanceof VmObject.AuthzSimple
                || byId.get(parameters.tlsAuthz()) instanceof VmObject.AuthzListFile)) {
            throw new BadOptionException("-global migration.tls-authz=" + parameters.tlsAuthz() + ": No authorization object with id '"
                    + parameters.tlsAuthz() + "' (give -object authz-simple,id=" + parameters.tlsAuthz() + ",identity=DN)");
        }
    }
}
