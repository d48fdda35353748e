import t from 'tap';
import { parseConfig, verifyConfig, fragmentsFor, kconfigSymbols, splitAbsent } from '../../harness/kernel/config.js';
import { parseKernelSpec } from '../../harness/kernel/source.js';
import { hashParts } from '../../base/hash.js';
import { ARCHES } from '../../harness/arch.js';
import { HarnessError } from '../../base/errors.js';

t.test('parseConfig reads set, module, string and unset options; later lines win', async (t) => {
  const m = parseConfig('CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D="x y"\nCONFIG_A=n\n# comment\nCONFIG_E=0x10\n');
  t.same([...m], [['CONFIG_A', 'n'], ['CONFIG_B', 'm'], ['CONFIG_C', 'n'], ['CONFIG_D', '"x y"'], ['CONFIG_E', '0x10']]);
});

t.test('verifyConfig reports options olddefconfig dropped or changed, naming the fragment', async (t) => {
  const frags = [
    { name: 'base.config', text: 'CONFIG_PCI=y\nCONFIG_FOO=y\n' },
    { name: 'vfio.config', text: 'CONFIG_VFIO=y\nCONFIG_MTTY=m\nCONFIG_IOMMUFD_VFIO_CONTAINER=n\n' },
  ];
  const final = 'CONFIG_PCI=y\nCONFIG_VFIO=y\nCONFIG_MTTY=y\n# CONFIG_IOMMUFD_VFIO_CONTAINER is not set\n';
  const d = verifyConfig(frags, final);
  t.same(d.map((x) => [x.option, x.wanted, x.got, x.from]), [
    ['CONFIG_FOO', 'y', 'n', 'base.config'],
    ['CONFIG_MTTY', 'm', 'y', 'vfio.config'],
  ]);
  t.same(verifyConfig(frags, `${final}CONFIG_FOO=y\nCONFIG_MTTY=m\n`), [], 'all kept: nothing reported');
});

t.test('a later fragment overrides an earlier one before verification', async (t) => {
  const frags = [{ name: 'a', text: 'CONFIG_X=y\n' }, { name: 'user-b', text: 'CONFIG_X=n\n' }];
  t.same(verifyConfig(frags, '# CONFIG_X is not set\n'), []);
  t.equal(verifyConfig(frags, 'CONFIG_X=y\n')[0]?.from, 'user-b');
});

t.test('our fragments ask for the Appendix C options the suites depend on', async (t) => {
  const all = new Map<string, string>();
  for (const f of fragmentsFor(ARCHES.x86_64)) for (const [k, v] of parseConfig(f.text)) all.set(k, v);
  for (const opt of ['IOMMUFD', 'IOMMUFD_TEST', 'VFIO_DEVICE_CDEV', 'VFIO_CONTAINER', 'VFIO_IOMMU_TYPE1', 'VFIO_PCI', 'INTEL_IOMMU',
    'AMD_IOMMU', 'VIRTIO_IOMMU', 'IRQ_REMAP', 'PCI_PASID', 'FAULT_INJECTION', 'DEBUG_FS', 'DEVTMPFS', 'TRANSPARENT_HUGEPAGE', 'VIRTIO_NET']) {
    t.equal(all.get(`CONFIG_${opt}`), 'y', opt);
  }
  t.equal(all.get('CONFIG_SAMPLE_VFIO_MDEV_MTTY'), 'm', 'mtty is a module so the suite can swap it');
  t.equal(all.get('CONFIG_IOMMUFD_VFIO_CONTAINER'), 'n', 'type1 dirty tracking needs the real container');
});

t.test('arm64: the same uAPI fragments on an arm64 base with SMMUv3, and nothing x86 in the common ones', async (t) => {
  const frags = fragmentsFor(ARCHES.arm64);
  t.equal(frags[0]?.name, 'base-arm64.config', 'arch base first, then the common fragments');
  t.same(frags.slice(1).map((f) => f.name), fragmentsFor(ARCHES.x86_64).slice(1).map((f) => f.name), 'the same common fragments as x86');
  const all = new Map<string, string>();
  for (const f of frags) for (const [k, v] of parseConfig(f.text)) all.set(k, v);
  for (const opt of ['ARM_SMMU_V3', 'ARM_SMMU_V3_IOMMUFD', 'ARM_GIC_V3', 'ARM_GIC_V3_ITS', 'PCI_HOST_GENERIC', 'SERIAL_AMBA_PL011_CONSOLE',
    'ARM_PSCI_FW', 'IOMMUFD_TEST', 'VFIO_PCI', 'HUGETLBFS', 'TRANSPARENT_HUGEPAGE', 'ARM_SMMU_V3_SVA']) {
    t.equal(all.get(`CONFIG_${opt}`), 'y', opt);
  }
  // IOMMUFD_TEST depends on IOMMU_PT_AMDV1 on arm64, which Kconfig shows only with COMPILE_TEST
  for (const opt of ['COMPILE_TEST', 'GENERIC_PT', 'IOMMU_PT', 'IOMMU_PT_AMDV1']) t.equal(all.get(`CONFIG_${opt}`), 'y', opt);
  t.equal(all.get('CONFIG_WERROR'), 'n', 'COMPILE_TEST must not turn warnings into a failed guest build');
  for (const x86 of ['INTEL_IOMMU', 'AMD_IOMMU', 'IRQ_REMAP', 'X86_X2APIC']) t.equal(all.get(`CONFIG_${x86}`), undefined, `${x86} only in the x86 base`);
});

t.test('an option the tree does not define is left out with a note; one it defines but dropped stops the build', async (t) => {
  const known = kconfigSymbols('config IOMMUFD\nmenuconfig VFIO\n\tconfig IOMMUFD_TEST\nconfig  SPACED \n# config COMMENTED\nconfigX NOT\n');
  t.same([...known].sort(), ['CONFIG_IOMMUFD', 'CONFIG_IOMMUFD_TEST', 'CONFIG_SPACED', 'CONFIG_VFIO']);
  const frags = [{ name: 'base-arm64.config', text: 'CONFIG_IOMMUFD_TEST=y\nCONFIG_IOMMU_PT_AMDV1=y\nCONFIG_VFIO=y\n' }];
  const { dropped, absent } = splitAbsent(verifyConfig(frags, 'CONFIG_VFIO=y\n'), known);
  t.same(dropped.map((d) => d.option), ['CONFIG_IOMMUFD_TEST'], 'defined here but refused: an error');
  t.same(absent.map((d) => d.option), ['CONFIG_IOMMU_PT_AMDV1'], 'not in this tree (6.12 has no generic_pt): left out');
});

t.test('cache keys are independent of property order and change with any part', async (t) => {
  const a = hashParts({ source: 'debian-7.2.13-1', arch: 'x86_64', fragments: 'abc', recipe: '1' });
  t.equal(a, hashParts({ recipe: '1', fragments: 'abc', arch: 'x86_64', source: 'debian-7.2.13-1' }));
  t.not(a, hashParts({ source: 'debian-7.2.13-2', arch: 'x86_64', fragments: 'abc', recipe: '1' }));
  t.not(a, hashParts({ source: 'debian-7.2.13-1', arch: 'x86_64', fragments: 'abd', recipe: '1' }));
  t.not(hashParts({ a: 'b', c: '' }), hashParts({ a: '', c: 'b' }), 'no ambiguity between fields');
});

t.test('kernel specs', async (t) => {
  t.same(parseKernelSpec('debian:6.12'), { kind: 'debian', series: '6.12' });
  t.same(parseKernelSpec('debian:latest'), { kind: 'debian', series: 'latest' });
  t.match(parseKernelSpec('/src/linux'), { kind: 'tree', path: '/src/linux' });
  t.throws(() => parseKernelSpec('debian:sid'), HarnessError);
  t.throws(() => parseKernelSpec('git:https://x'), /unknown kernel spec/);
});
