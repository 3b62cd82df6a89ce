package ferry.vm;

import ferry.qmp.Json;
import ferry.qmp.JsonDecoder;
import ferry.qmp.JsonException;
import ferry.tls.Authorizer;
import ferry.tls.AuthzList;
import ferry.tls.TlsException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import javax.security.auth.x500.X500Principal;

/**
 * QEMU's {@code -object authz-list-file,id=ID,filename=FILE[,refresh=on|off]}: the rules of an
 * {@link AuthzList} in a JSON file of QEMU's {@code AuthZListProperties} shape (qapi/authz.json):
 * <pre>
 * { "policy": "deny",
 *   "rules": [ { "match": "O=Example,CN=src.example", "policy": "allow" },
 *              { "match": "O=Example,CN=*.lab.example", "policy": "allow", "format": "glob" } ] }
 * </pre>
 * {@code policy} defaults to deny, a rule's {@code format} to exact; an unknown member is an error, as
 * in QEMU. With refresh (QEMU's default on Linux, where it watches the file with inotify) the file is
 * read again when its modification time or size changed since the last read, at the next decision; if
 * that read fails, every client is refused until the file reads well again (QEMU's rule).
 *
 * <p>Decisions come from the destination's {@code migration-listen} thread; synchronized.
 */
final class AuthzListFile implements Authorizer {
    private final String id;
    private final Path file;
    private final boolean refresh;
    private AuthzList rules;
    private TlsException failure;
    private Object stamp;

    /** Reads the file now: a file that does not read is refused at start, as QEMU refuses it. */
    AuthzListFile(String id, Path file, boolean refresh) throws TlsException {
        this.id = id;
        this.file = file;
        this.refresh = refresh;
        load();
        if (failure != null) {
            throw failure;
        }
    }

    @Override
    public String id() {
        return id;
    }

    @Override
    public synchronized boolean allows(X500Principal subject) throws TlsException {
        if (refresh && !currentStamp().equals(stamp)) {
            load();
        }
        if (failure != null) {
            throw failure;
        }
        return rules.allows(subject);
    }

    private Object currentStamp() {
        try {
            BasicFileAttributes attributes = Files.readAttributes(file, BasicFileAttributes.class);
            return List.of(attributes.lastModifiedTime(), attributes.size());
        } catch (IOException e) {
            return List.of("unreadable", e.getMessage());
        }
    }

    private void load() {
        stamp = currentStamp();
        try {
            rules = parse(Files.readAllBytes(file), file);
            failure = null;
        } catch (IOException e) {
            rules = null;
            failure = e instanceof TlsException t ? t : new TlsException(TlsException.Kind.AUTHZ,
                    "authz-list-file " + id + ": Unable to read '" + file + "': " + e.getMessage(), e);
        }
    }

    /** QEMU's AuthZListProperties from JSON. */
    static AuthzList parse(byte[] json, Path file) throws TlsException {
        try {
            Json.Obj top = JsonDecoder.parse(json).asObject();
            only(top, Set.of("policy", "rules"), file);
            AuthzList.Policy policy = policy(top.optionalString("policy").orElse("deny"), file);
            List<AuthzList.Rule> rules = new ArrayList<>();
            for (Json element : top.member("rules").map(r -> r).orElse(new Json.Arr(List.of())).asArray()) {
                Json.Obj rule = element.asObject();
                only(rule, Set.of("match", "policy", "format"), file);
                String format = rule.optionalString("format").orElse("exact");
                if (!format.equals("exact") && !format.equals("glob")) {
                    throw new TlsException(TlsException.Kind.AUTHZ, "bad rule format '" + format + "' in " + file + " (exact or glob)");
                }
                rules.add(new AuthzList.Rule(rule.string("match"), policy(rule.string("policy"), file),
                        AuthzList.Format.valueOf(format.toUpperCase(Locale.ROOT))));
            }
            return new AuthzList(policy, rules);
        } catch (JsonException e) {
            throw new TlsException(TlsException.Kind.AUTHZ, "File '" + file + "' is not QEMU's authz list JSON: " + e.getMessage(), e);
        }
    }

    private static void only(Json.Obj object, Set<String> known, Path file) throws TlsException {
        for (String name : object.members().keySet()) {
            if (!known.contains(name)) {
                throw new TlsException(TlsException.Kind.AUTHZ, "Parameter '" + name + "' is unexpected in " + file);
            }
        }
    }

    private static AuthzList.Policy policy(String text, Path file) throws TlsException {
        return switch (text) {
            case "allow" -> AuthzList.Policy.ALLOW;
            case "deny" -> AuthzList.Policy.DENY;
            default -> throw new TlsException(TlsException.Kind.AUTHZ, "bad policy '" + text + "' in " + file + " (allow or deny)");
        };
    }
}
