package ferry.qmp;

/** The reply of {@code query-version}, also sent in QMP's greeting: {@code 7.2.0}, package {@code Debian 1:7.2+dfsg-7}. */
public record VersionInfo(int major, int minor, int micro, String pkg) {
    static VersionInfo decode(Json.Obj ret) throws JsonException {
        Json.Obj qemu = ret.object("qemu");
        return new VersionInfo((int) qemu.number("major"), (int) qemu.number("minor"), (int) qemu.number("micro"),
                ret.string("package").strip());
    }

    /** The QAPI {@code VersionInfo} object, as {@code query-version} and the greeting carry it. */
    public Json.Obj encode() {
        java.util.Map<String, Json> qemu = new java.util.LinkedHashMap<>();
        qemu.put("micro", Json.of(micro));
        qemu.put("minor", Json.of(minor));
        qemu.put("major", Json.of(major));
        java.util.Map<String, Json> version = new java.util.LinkedHashMap<>();
        version.put("qemu", new Json.Obj(qemu));
        version.put("package", Json.of(pkg));
        return new Json.Obj(version);
    }

    @Override public String toString() {
        return major + "." + minor + "." + micro + (pkg.isEmpty() ? "" : " (" + pkg + ")");
    }
}
