# The arm64 devices the profiles use (harness/qemu/profiles.ts), built with --without-default-devices:
# the virt board (it selects SMMUv3, GICv3 and the PL011 console), virtio-net, edu, PCIe root ports.
CONFIG_ARM_VIRT=y
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_NET=y
CONFIG_EDU=y
CONFIG_PCIE_PORT=y
# The board selects ACPI_CXL, whose cxl.c calls into hw/cxl; the CXL core is "default y if
# PCI_EXPRESS", and --without-default-devices drops defaults, which leaves that call unresolved at
# link time (QEMU 10.2.2). Ask for it explicitly, with the expander bridge it depends on and the
# type-3 memory device its mailbox code calls (their defaults are dropped the same way).
CONFIG_CXL=y
CONFIG_PXB=y
CONFIG_CXL_MEM_DEVICE=y
