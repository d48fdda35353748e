import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoPath } from '../../base/paths.js';
import { parseDeviceList, parseMachineList, parsePropList, parseVersion, type QemuCaps } from '../../harness/qemu/probe.js';
import type { QemuBinary, QemuOrigin } from '../../harness/qemu/binary.js';

/**
 * A QEMU's capabilities as the probe reads them, from help texts captured off a real binary
 * (test/fixtures/qemu/<version>-<target>/: version, machine-help, device-help, machine-T, device-T).
 */
export function capsFromFixture(name: string): QemuCaps {
  const dir = repoPath('test', 'fixtures', 'qemu', name);
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  const props: Record<string, string[]> = {};
  for (const f of readdirSync(dir)) {
    const m = /^(machine|device)-(.+)\.txt$/.exec(f);
    if (m && m[2] !== 'help') props[`${m[1]}:${m[2]}`] = parsePropList(read(f));
  }
  return { ...parseVersion(read('version.txt')), machines: parseMachineList(read('machine-help.txt')), devices: parseDeviceList(read('device-help.txt')), props };
}

/** A QemuBinary over a fixture: for command-line tests that never start QEMU. */
export function fixtureQemu(name: string, origin: QemuOrigin = 'system'): QemuBinary {
  const arch = name.endsWith('aarch64') ? 'arm64' : 'x86_64';
  return { origin, arch, path: `/fixture/${name}/qemu-system-${name.split('-').pop()}`, caps: capsFromFixture(name), firmwareDirs: origin === 'system' ? [] : ['/usr/share/seabios'] };
}
