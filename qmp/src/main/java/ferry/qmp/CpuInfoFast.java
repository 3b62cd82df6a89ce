package ferry.qmp;

import java.util.ArrayList;
import java.util.List;

/**
 * One vCPU as {@code query-cpus-fast} reports it (QAPI {@code CpuInfoFast}).
 *
 * @param cpuIndex QEMU's index of the vCPU
 * @param qomPath where the CPU object lives, e.g. {@code /machine/unattached/device[0]}; {@code qom-get} of
 *     its {@code type} gives the CPU model ({@code qemu64-x86_64-cpu})
 * @param target the target architecture, e.g. {@code x86_64}
 */
public record CpuInfoFast(long cpuIndex, String qomPath, String target) {
    static List<CpuInfoFast> decodeList(Json ret) throws JsonException {
        List<CpuInfoFast> cpus = new ArrayList<>();
        for (Json element : ret.asArray()) {
            Json.Obj cpu = element.asObject();
            cpus.add(new CpuInfoFast(cpu.number("cpu-index"), cpu.string("qom-path"), cpu.string("target")));
        }
        return List.copyOf(cpus);
    }
}
