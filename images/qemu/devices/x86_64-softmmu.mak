# The x86_64 devices the profiles use (harness/qemu/profiles.ts) and nothing else, built with
# --without-default-devices: q35, the three emulated IOMMUs, virtio-net for SSH, virtio-9p for the
# real-client suite's rootfs, edu (the DMA engine the dma and dirty suites drive), PCIe root ports.
CONFIG_Q35=y
CONFIG_VTD=y
CONFIG_AMD_IOMMU=y
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_NET=y
CONFIG_VIRTIO_IOMMU=y
CONFIG_VIRTIO_9P=y
CONFIG_EDU=y
# pasid-dma (patch 0006): a PCIe DMA engine tagging its transfers with a PASID (profile intel-iommu-pasid)
CONFIG_PASID_DMA=y
CONFIG_PCIE_PORT=y
# The board selects ACPI_CXL, whose cxl.c calls into hw/cxl; the CXL core is "default y if
# PCI_EXPRESS", and --without-default-devices drops defaults, which leaves that call unresolved at
# link time (QEMU 10.2.2). Ask for it explicitly, with the expander bridge it depends on and the
# type-3 memory device its mailbox code calls (their defaults are dropped the same way).
CONFIG_CXL=y
CONFIG_PXB=y
CONFIG_CXL_MEM_DEVICE=y
