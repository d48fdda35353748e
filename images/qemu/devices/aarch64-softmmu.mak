# The arm64 devices the profiles use (harness/qemu/profiles.ts), built with --without-default-devices:
# the virt board (it selects SMMUv3, GICv3 and the PL011 console), virtio-net, edu, PCIe root ports.
CONFIG_ARM_VIRT=y
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_NET=y
CONFIG_EDU=y
CONFIG_PCIE_PORT=y
