import t from 'tap';
import { qemuComplaint } from '../../harness/target/qemu-guest.js';
import { hangStateCommands } from '../../harness/qemu/hang-state.js';
import { SUITES } from '../../suites/registry.js';
import { guestVcpus, qemuArgs, kernelCmdline, shellQuote } from '../../harness/qemu/cmdline.js';
import { DEFAULT_PROFILES, PROFILES, getProfile, resolveProfile } from '../../harness/qemu/profiles.js';
import { ARCHES } from '../../harness/arch.js';
import { HarnessError } from '../../base/errors.js';
import { fixtureQemu } from '../helpers/qemu-caps.js';
import { describeOption } from '../../harness/qemu/options.js';
import { readSeries } from '../../images/qemu/series.js';
import { repoPath } from '../../base/paths.js';

const qemu = fixtureQemu('7.2.22-x86_64');
const base = { arch: ARCHES.x86_64, qemu, kernel: '/k/bzImage', initrd: '/i/initramfs.cpio.gz', sshPort: 40022, qmpSocket: '/r/qmp.sock' };

function opt(args: string[], name: string): string[] {
  return args.flatMap((a, i) => (a === name ? [args[i + 1]!] : []));
}

/** The 7.2 fixture with what our patch series adds (and QEMU 10.1's dma-remap): what a built QEMU lists. */
function builtQemu(): typeof qemu {
  const caps = qemu.caps;
  const props = {
    ...caps.props,
    'device:intel-iommu': [...caps.props['device:intel-iommu']!, 'x-ssads'],
    'device:amd-iommu': [...caps.props['device:amd-iommu']!, 'dma-remap', 'x-hd'],
    'device:pasid-dma': [],
    'device:virtio-net-pci': [...caps.props['device:virtio-net-pci']!, 'sriov-pf', 'x-admin-vq'],
  };
  return { ...qemu, origin: 'built', caps: { ...caps, devices: [...caps.devices, 'pasid-dma'], props } };
}
const qemuFor = (p: { qemu?: 'built' }) => (p.qemu === 'built' ? builtQemu() : qemu);

t.test('every profile: q35, IOMMU device before any other PCI device, SSH only on loopback', async (t) => {
  for (const p of PROFILES.filter((x) => x.arch === 'x86_64')) {
    const a = qemuArgs({ ...base, qemu: qemuFor(p), profile: p, accel: 'tcg' });
    t.equal(opt(a, '-machine')[0], describeOption(p.machine), `${p.name} machine`);
    t.match(opt(a, '-machine')[0], /^q35/);
    const devices = opt(a, '-device');
    t.same(devices.slice(0, p.iommuDevices.length).map((d) => d.split(',')[0]), p.iommuDevices.map((d) => d.type), `${p.name}: IOMMU devices first`);
    t.ok(devices.some((d) => d.startsWith('virtio-net-pci')), `${p.name}: network`);
    t.same(opt(a, '-netdev'), ['user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22']);
    t.ok(a.includes('-no-reboot') && a.includes('-nodefaults'), 'a panic ends QEMU; no default devices');
    t.same(opt(a, '-qmp'), ['unix:/r/qmp.sock,server=on,wait=off']);
  }
});

t.test('IOMMU specifics', async (t) => {
  const a = (n: string) => qemuArgs({ ...base, profile: getProfile(n), accel: 'tcg' });
  t.match(opt(a('intel-iommu-sm'), '-device')[0], /x-scalable-mode=on.*x-pasid-mode=on/);
  t.match(opt(a('intel-iommu'), '-machine')[0], /kernel-irqchip=split/, 'interrupt remapping needs a split irqchip');
  t.match(opt(a('amd-iommu'), '-machine')[0], /kernel-irqchip=split/);
  t.match(opt(a('virtio-iommu'), '-append')[0], /iommufd\.allow_unsafe_interrupts=1/);
  t.notMatch(opt(a('intel-iommu'), '-append')[0], /allow_unsafe_interrupts/);
  t.same(opt(a('none'), '-device').filter((d) => /iommu/.test(d)), []);
});

t.test('accelerator decides cpu and accel options', async (t) => {
  const p = getProfile('none');
  const tcg = qemuArgs({ ...base, profile: p, accel: 'tcg' });
  const kvm = qemuArgs({ ...base, profile: p, accel: 'kvm' });
  t.same(opt(tcg, '-cpu'), ['max']);
  t.match(opt(tcg, '-accel')[0], /^tcg/);
  t.same(opt(kvm, '-cpu'), ['host']);
  t.same(opt(kvm, '-accel'), ['kvm']);
  t.match(kernelCmdline({ ...base, profile: p, accel: 'tcg' }), /tsc=reliable/);
  t.notMatch(kernelCmdline({ ...base, profile: p, accel: 'kvm' }), /tsc=reliable/);
});

t.test('kernel command line: console first, panic ends the guest, extra words last', async (t) => {
  const c = kernelCmdline({ ...base, profile: getProfile('intel-iommu'), accel: 'tcg', append: ['vfioc_key=AAAA'] });
  t.match(c, /^console=ttyS0 panic=-1 /);
  t.match(c, /intel_iommu=on vfioc_key=AAAA$/);
});

t.test('probe boots have no network', async (t) => {
  const a = qemuArgs({ arch: ARCHES.x86_64, qemu, kernel: 'k', initrd: 'i', profile: getProfile('none'), accel: 'kvm', append: ['vfioc_probe=1'] });
  t.same(opt(a, '-netdev'), []);
});

t.test('arm64 profiles: virt with GICv3, SMMUv3 on the machine, PL011 console, no TSC words', async (t) => {
  const arm = { ...base, arch: ARCHES.arm64, qemu: fixtureQemu('7.2.22-aarch64'), kernel: '/k/Image' };
  const smmu = qemuArgs({ ...arm, profile: getProfile('smmuv3'), accel: 'tcg' });
  t.equal(opt(smmu, '-machine')[0], 'virt,iommu=smmuv3,gic-version=3', 'gic-version=3: GICv2m has no MSI isolation and VFIO binding fails');
  t.same(opt(smmu, '-cpu'), ['max']);
  t.same(opt(smmu, '-kernel'), ['/k/Image']);
  const append = opt(smmu, '-append')[0]!;
  t.match(append, /^console=ttyAMA0 panic=-1/);
  t.notMatch(append, /tsc=reliable/, 'the TSC words are x86 only');
  t.same(opt(smmu, '-device').filter((d) => /iommu/.test(d)), [], 'the SMMU is part of the machine, not a -device');
  const none = qemuArgs({ ...arm, profile: getProfile('arm64-none'), accel: 'tcg' });
  t.equal(opt(none, '-machine')[0], 'virt,gic-version=3');
  t.equal(getProfile('smmuv3').arch, 'arm64');
  t.ok(getProfile('smmuv3').vfioPci && !getProfile('arm64-none').vfioPci);
  t.equal(ARCHES.arm64.qemuBinary, 'qemu-system-aarch64');
});

t.test('every profile carries the edu DMA device after the network card', async (t) => {
  for (const p of PROFILES) {
    const arch = ARCHES[p.arch];
    const armQemu = p.qemu === 'built' ? fixtureQemu('10.2.2-built-aarch64', 'built') : fixtureQemu('7.2.22-aarch64');
    const devices = opt(qemuArgs({ ...base, arch, qemu: p.arch === 'arm64' ? armQemu : qemuFor(p), profile: p, accel: 'tcg' }), '-device');
    const net = devices.findIndex((d) => d.startsWith('virtio-net-pci'));
    const edu = devices.indexOf('edu');
    t.ok(edu > net && net >= 0, `${p.name}: edu after the network card`);
  }
  const extra = opt(qemuArgs({ ...base, profile: getProfile('none'), accel: 'tcg', devices: ['pci-testdev'] }), '-device');
  t.same(extra.slice(-2), ['edu', 'pci-testdev'], "a caller's devices follow the profile's");
});

t.test('unknown profile names the known ones', async (t) => {
  t.throws(() => getProfile('smmu'), HarnessError);
  t.throws(() => getProfile('smmu'), /known: none, intel-iommu/);
});

t.test('shell quoting for reproducers', async (t) => {
  t.equal(shellQuote(['qemu', '-append', "console=ttyS0 a='b'"]), `qemu -append 'console=ttyS0 a='\\''b'\\'''`);
});

t.test('one profile, two spellings: option names follow what the binary lists', async (t) => {
  const p = getProfile('intel-iommu-sm');
  const caps = fixtureQemu('7.2.22-x86_64').caps;
  const old = resolveProfile(p, caps);
  t.ok(old.ok && /x-scalable-mode=on,x-pasid-mode=on$/.test(old.iommuDevices[0]!), 'QEMU 7.2 spells them x-scalable-mode and x-pasid-mode');
  // QEMU 11.1.3 as Debian's unstable suite ships it (help texts captured from the real binary).
  const neu = resolveProfile(p, fixtureQemu('11.1.3-x86_64').caps);
  t.ok(neu.ok && /,scalable-mode=on,pasid-bits=8$/.test(neu.iommuDevices[0]!), 'QEMU 11.1 gets the new names');
  const amd = (c: typeof caps) => { const r = resolveProfile(getProfile('amd-iommu'), c); return r.ok ? r.iommuDevices[0] : r.why; };
  t.equal(amd(caps), 'amd-iommu,intremap=on', 'QEMU 7.2 has no dma-remap (it always translated): left out');
  t.equal(amd(fixtureQemu('11.1.3-x86_64').caps), 'amd-iommu,intremap=on,dma-remap=on', 'QEMU >= 10.1 leaves AMD-Vi in passthrough without dma-remap: turned on');
  for (const name of ['none', 'intel-iommu', 'virtio-iommu']) {
    t.same(resolveProfile(getProfile(name), fixtureQemu('11.1.3-x86_64').caps), resolveProfile(getProfile(name), caps), `${name}: spelt the same on 7.2 and 11.1`);
  }
  const none = { ...caps, props: { ...caps.props, 'device:intel-iommu': ['intremap', 'caching-mode'] } };
  t.same(resolveProfile(p, none), { ok: false, why: "QEMU 7.2.22's intel-iommu has no property scalable-mode or x-scalable-mode" }, 'a property neither spelling knows is said, not guessed');
  t.same(resolveProfile(getProfile('intel-iommu'), { ...caps, devices: caps.devices.filter((d) => d !== 'intel-iommu') }), { ok: false, why: "QEMU 7.2.22 has no device 'intel-iommu'" });
  t.throws(() => qemuArgs({ ...base, qemu: { ...base.qemu, caps: none }, profile: p, accel: 'tcg' }), /cannot run on .*scalable-mode or x-scalable-mode/);
});

t.test('a built QEMU gets the system firmware directories, the host QEMU none', async (t) => {
  const sys = qemuArgs({ ...base, profile: getProfile('none'), accel: 'tcg' });
  t.same(opt(sys, '-L'), []);
  const built = qemuArgs({ ...base, qemu: fixtureQemu('7.2.22-x86_64', 'built'), profile: getProfile('none'), accel: 'tcg' });
  t.same(opt(built, '-L'), ['/usr/share/seabios']);
});

t.test('the dirty-tracking VT-d profile: scalable mode with x-ssads, no caching mode, on our QEMU only', async (t) => {
  const p = getProfile('intel-iommu-dirty');
  t.equal(p.qemu, 'built');
  const a = qemuArgs({ ...base, qemu: builtQemu(), profile: p, accel: 'tcg' });
  t.equal(opt(a, '-device')[0], 'intel-iommu,intremap=on,x-scalable-mode=on,x-ssads=on');
  t.match(opt(a, '-append')[0], /intel_iommu=on,sm_on/);
  t.same(resolveProfile(p, qemu.caps), { ok: false, why: "QEMU 7.2.22's intel-iommu has no property x-ssads" }, 'an unpatched QEMU cannot express it');
});

t.test('the PASID VT-d profile: scalable mode with PASID and the pasid-dma device, on our QEMU only', async (t) => {
  const p = getProfile('intel-iommu-pasid');
  t.equal(p.qemu, 'built');
  const a = qemuArgs({ ...base, qemu: builtQemu(), profile: p, accel: 'tcg' });
  t.equal(opt(a, '-device')[0], 'intel-iommu,intremap=on,caching-mode=on,x-scalable-mode=on,x-pasid-mode=on');
  t.ok(opt(a, '-device').includes('pasid-dma'), 'the device on the root bus (an RCiEP: PASID needs End-End TLP prefixes up to the root)');
  t.match(opt(a, '-append')[0], /intel_iommu=on,sm_on/);
  t.same(resolveProfile(p, qemu.caps), { ok: false, why: "QEMU 7.2.22 has no device 'pasid-dma'" }, 'an unpatched QEMU cannot express it');
});

t.test('the dirty-tracking SMMUv3 profile: a user-created stage 1 SMMUv3 with x-httu, on our QEMU only', async (t) => {
  const p = getProfile('smmuv3-dirty');
  t.equal(p.qemu, 'built');
  t.equal(p.arch, 'arm64');
  const arm = { ...base, arch: ARCHES.arm64, qemu: fixtureQemu('10.2.2-built-aarch64', 'built'), kernel: '/k/Image' };
  const a = qemuArgs({ ...arm, profile: p, accel: 'tcg' });
  t.equal(opt(a, '-machine')[0], 'virt,gic-version=3', 'no machine SMMU: QEMU 10.2 makes iommu=smmuv3 nested, which x-httu refuses');
  t.equal(opt(a, '-device')[0], 'arm-smmuv3,primary-bus=pcie.0,x-httu=on');
  t.same(resolveProfile(p, fixtureQemu('7.2.22-aarch64').caps), { ok: false, why: "QEMU 7.2.22 has no device 'arm-smmuv3'" }, 'the host QEMU cannot express it');
  const unpatched = fixtureQemu('10.2.2-built-aarch64').caps;
  const props = { ...unpatched.props, 'device:arm-smmuv3': unpatched.props['device:arm-smmuv3']!.filter((x) => x !== 'x-httu') };
  t.same(resolveProfile(p, { ...unpatched, props }), { ok: false, why: "QEMU 10.2.2's arm-smmuv3 has no property x-httu" }, 'a 10.2 without our series cannot either');
});

t.test('the dirty-tracking AMD-Vi profile: dma-remap and x-hd, on our QEMU only', async (t) => {
  const p = getProfile('amd-iommu-dirty');
  t.equal(p.qemu, 'built');
  t.ok(DEFAULT_PROFILES.includes(p.name), 'in the default matrix');
  const a = qemuArgs({ ...base, qemu: builtQemu(), profile: p, accel: 'tcg' });
  t.equal(opt(a, '-device')[0], 'amd-iommu,intremap=on,dma-remap=on,x-hd=on');
  t.same(resolveProfile(p, qemu.caps), { ok: false, why: "QEMU 7.2.22's amd-iommu has no property dma-remap" }, 'an unpatched QEMU cannot express it');
});

t.test('a profile names the patches behind its hardware, and they are in our series', async (t) => {
  const series = readSeries(repoPath('images', 'qemu', 'patches')).patches;
  const emulated = PROFILES.filter((p) => p.emulatedBy);
  t.ok(emulated.length >= 1, 'at least the VT-d dirty-tracking profile');
  for (const p of emulated) {
    t.equal(p.qemu, 'built', `${p.name}: hardware only our QEMU emulates runs on our QEMU`);
    for (const patch of p.emulatedBy!) t.ok(series.includes(patch), `${p.name}: ${patch} is in images/qemu/patches/series`);
  }
  for (const p of PROFILES.filter((x) => x.qemu === 'built')) t.ok(p.emulatedBy?.length, `${p.name} runs on our QEMU and names why`);
});

t.test('a profile limited to some suites names suites that exist, and its base profile runs the rest', async (t) => {
  const names = new Set(SUITES.map((s) => s.name));
  const limited = PROFILES.filter((p) => p.suites);
  t.ok(limited.length >= 3, 'the dirty-tracking and PASID profiles');
  for (const p of limited) {
    t.ok(p.suites!.length > 0 && p.suites!.every((s) => names.has(s)), `${p.name}: ${p.suites!.join(', ')}`);
    t.ok(PROFILES.some((b) => b.arch === p.arch && !b.suites && !b.qemu), `${p.name}: an unlimited ${p.arch} profile on any QEMU runs every suite`);
  }
});

t.test('the virtio VF profile: a root port, the VFs before their PF, the PF with the admin queue, on our QEMU only', async (t) => {
  const p = getProfile('virtio-vf');
  t.equal(p.qemu, 'built');
  const devices = opt(qemuArgs({ ...base, qemu: builtQemu(), profile: p, accel: 'tcg' }), '-device');
  const at = (re: RegExp) => devices.findIndex((d) => re.test(d));
  const port = at(/^pcie-root-port,id=vfrp,/);
  const vfs = devices.filter((d) => /^virtio-net-pci,bus=vfrp,addr=0\.[12],sriov-pf=vfpf,romfile=$/.test(d));
  const pf = at(/^virtio-net-pci,id=vfpf,bus=vfrp,addr=0\.0,x-admin-vq=on,romfile=$/);
  t.ok(port >= 0 && pf > port, 'the PF sits behind the root port');
  t.equal(vfs.length, 2, 'two VFs naming the PF');
  t.ok(vfs.every((v) => devices.indexOf(v) < pf), 'QEMU collects the VFs when the PF is realized: they come first');
  t.same(p.guestDevices, ['0000:01:00.0,driver=virtio_vfio_pci,vfs=2', '0000:02:00.0,driver=virtio_vfio_pci,vfs=1']);
  // the PF without the admin queue: a port of its own after the first (the guest's bus 2), one VF
  const port2 = at(/^pcie-root-port,id=vfrp2,/);
  const pf2 = at(/^virtio-net-pci,id=vfpf2,bus=vfrp2,addr=0\.0,romfile=$/);
  const vf2 = at(/^virtio-net-pci,bus=vfrp2,addr=0\.1,sriov-pf=vfpf2,romfile=$/);
  t.ok(port2 > pf && pf2 > port2 && vf2 > port2 && vf2 < pf2, 'its port comes after the first PF, its VF before it');
  t.notMatch(devices[pf2]!, /x-admin-vq/, 'no admin queue on the second PF');
  t.notOk(DEFAULT_PROFILES.includes('virtio-vf'), 'a profile that binds devices in its guest runs when named');
  t.match(resolveProfile(p, qemu.caps), { ok: false, why: /virtio-net-pci has no property (sriov-pf|x-admin-vq)/ }, 'an unpatched QEMU cannot express it');
});

t.test('the vCPU state read at a case timeout: every x86 local APIC, registers elsewhere', async (t) => {
  t.same(hangStateCommands('x86_64', 2), ['info status', 'info cpus', 'info lapic 0', 'info lapic 1']);
  t.same(hangStateCommands('arm64', 4), ['info status', 'info cpus', 'info registers -a']);
});

t.test('what QEMU said before it died goes into the death reason; warnings and our SIGTERM do not', async (t) => {
  const warn = 'qemu-system-x86_64: warning: nic vfpf has no peer\n';
  t.equal(qemuComplaint(`${warn}qemu-system-x86_64: ../src/system/physmem.c:760: iotlb_to_section: Assertion \`section_index < d->map.sections_nb' failed.\n`),
    "../src/system/physmem.c:760: iotlb_to_section: Assertion `section_index < d->map.sections_nb' failed.");
  t.equal(qemuComplaint(`${warn}qemu-system-x86_64: terminating on signal 15 from pid 8230 (node)\n`), undefined);
  t.equal(qemuComplaint(''), undefined);
});

t.test('a profile can ask for fewer vCPUs under TCG only', async (t) => {
  const vf = getProfile('virtio-vf');
  t.equal(guestVcpus({ profile: vf, accel: 'tcg', smp: 2 }), 1, 'TCG: the profile\'s limit');
  t.equal(guestVcpus({ profile: vf, accel: 'tcg' }), 1);
  t.equal(guestVcpus({ profile: vf, accel: 'kvm', smp: 2 }), 2, 'KVM: what the suites ask');
  t.equal(guestVcpus({ profile: getProfile('none'), accel: 'tcg', smp: 3 }), 3, 'no limit');
  t.equal(guestVcpus({ profile: getProfile('none'), accel: 'tcg' }), 2, 'the default');
  t.equal(getProfile('virtio-vf').tcgVcpus, 1, 'virtio-vf: one vCPU under TCG');
});
