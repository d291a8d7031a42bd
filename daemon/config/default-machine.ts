/**
 * The embedded default machine: an ARM media SoC in miniature. DRAM spans
 * the 4 GiB boundary (so 32-bit DMA masks matter), a small TCM, a contiguous
 * carveout, 2 MiB and 1 GiB hugepage reserves, and one pool per use case.
 * README.md documents it as a table; keep the two in step.
 */
import type { RawConfig } from './schema.js';

export const DEFAULT_MACHINE: RawConfig = {
  server: { socketMode: '0660', maxFrameBytes: '4M' },
  limits: { maxHandles: 1024 },
  // Anonymous clients may do everything but admin, so a new user can try every
  // pool and attach drivers. Production configs narrow this (see README).
  auth: { anonymous: { capabilities: ['alloc:writecombine', 'alloc:uncached', 'driver'] }, cookie: true },
  memory: {
    regions: [
      { name: 'tcm', base: '0x10000000', size: '256K', kind: 'tcm' },
      { name: 'carveout', base: '0x60000000', size: '256M', kind: 'carveout' },
      { name: 'dram', base: '0x80000000', size: '8G', kind: 'dram' },
    ],
  },
  hugepages: [
    { size: '2M', region: 'dram', nr: 256, overcommit: 128 },
    { size: '1G', region: 'dram', nr: 2, overcommit: 0 },
  ],
  pools: [
    { name: 'default', cache: 'writeback', pageSize: '4K', region: 'dram' },
    { name: 'huge', cache: 'writeback', pageSize: '2M', region: 'dram' },
    { name: 'wc', cache: 'writecombine', pageSize: '2M', region: 'dram', capability: 'alloc:writecombine' },
    { name: 'uncached', cache: 'uncached', pageSize: '4K', region: 'dram', capability: 'alloc:uncached' },
    { name: 'contig', cache: 'writecombine', pageSize: '4K', region: 'carveout', contiguous: true, capability: 'alloc:writecombine' },
    { name: 'dma32', cache: 'writeback', pageSize: '4K', region: 'dram', maxAddress: '4G' },
    { name: 'tcm', cache: 'uncached', pageSize: '4K', region: 'tcm', contiguous: true, capability: 'alloc:uncached' },
    { name: 'giant', cache: 'writeback', pageSize: '1G', region: 'dram' },
  ],
  // swiotlb: 64 MiB of 2 KiB slots below 4 GiB, for devices that may bounce
  bounce: { size: '64M', region: 'dram', maxMapping: '256K' },
  // Built-in simulated devices, modelled on the media pipeline the design grew from.
  drivers: [
    {
      name: 'gpu',
      description: 'GPU: non-coherent, behind an IOMMU with 4K/64K/2M pages, wants write-combine or uncached',
      constraints: { align: 4096, cache: ['writecombine', 'uncached'], coherent: false, dmaMask: 40, iommu: { pageSizes: [4096, 65536, 2097152], iovaSize: 4294967296 } },
    },
    {
      name: 'jpeg',
      description: 'JPEG decoder: no IOMMU, physically contiguous, 32-bit DMA, 64 KiB alignment',
      constraints: { align: 65536, contiguous: true, coherent: false, dmaMask: 32 },
    },
    {
      name: 'capture',
      description: 'camera capture: scatter-gather, page-aligned, 32-bit DMA, may bounce',
      constraints: { align: 4096, maxSegments: 128, maxSegmentSize: 262144, coherent: false, dmaMask: 32, bounce: true },
    },
    {
      name: 'video',
      description: 'video decoder: non-coherent, behind an IOMMU with 4K/64K pages and a 1 GiB IOVA space',
      constraints: { align: 4096, cache: ['writeback', 'writecombine'], coherent: false, dmaMask: 32, iommu: { pageSizes: [4096, 65536], iovaSize: 1073741824 } },
    },
    {
      name: 'display',
      description: 'display controller: scans out of physically contiguous write-combine memory below 4 GiB',
      constraints: { align: 4096, contiguous: true, cache: ['writecombine'], coherent: false, dmaMask: 32 },
    },
    {
      name: 'dsp',
      description: 'audio DSP: can only reach the TCM',
      constraints: { contiguous: true, regions: ['tcm'], coherent: false, dmaMask: 32 },
    },
    {
      name: 'nic',
      description: 'network controller: cache-coherent (snoops CPU caches), 64-bit DMA, scatter-gather',
      constraints: { maxSegments: 64, cache: ['writeback'], coherent: true, dmaMask: 64 },
    },
  ],
};
