/**
 * DMA direction (include/linux/dma-direction.h): a registration is mapped
 * bidirectional (the default), to-device (the device only reads it) or
 * from-device (the device only writes it). The checks are dma-debug's
 * (kernel/dma/debug.c), which warns and lets the operation go on:
 *
 * - check_sync: a sync of a bidirectional mapping is always fine; otherwise
 *   a sync with another direction than the mapping's is "device driver
 *   syncs DMA memory with different direction"; a sync for the CPU of a
 *   mapping that is not from-device, with a direction that is not
 *   to-device, is "… syncs device read-only DMA memory for cpu"; a sync for
 *   the device of a mapping that is not to-device, with a direction that is
 *   not from-device, is "… syncs device write-only DMA memory to device".
 *   A bufferd sync is DMA_BUF_IOCTL_SYNC, whose access names the direction
 *   as drivers/dma-buf/dma-buf.c dma_buf_ioctl does (read: DMA_FROM_DEVICE,
 *   write: DMA_TO_DEVICE, rw: DMA_BIDIRECTIONAL); `start` syncs for the CPU
 *   and `end` for the device, of every registration of the buffer.
 * - a device access against the mapping's direction: dma-debug can't see
 *   the device, but the mapping forbids it (drivers/iommu/dma-iommu.c
 *   dma_info_to_prot maps to-device IOMMU_READ only, from-device
 *   IOMMU_WRITE only): a device writing a to-device mapping, or reading a
 *   from-device one. Named in debug.c's words ("device read-only DMA
 *   memory" is to-device, "device write-only" from-device).
 * Pure: the checks return what to report; ownership.ts records it.
 */
import type { ViolationKind } from './violations.js';
import type { DmaDirection } from '../../protocol/ops/drivers.js';

export { DMA_DIRECTIONS, type DmaDirection } from '../../protocol/ops/drivers.js';

/** debug.c's dir2name. */
export const DIR2NAME: Record<DmaDirection, string> = {
  bidirectional: 'DMA_BIDIRECTIONAL',
  'to-device': 'DMA_TO_DEVICE',
  'from-device': 'DMA_FROM_DEVICE',
};

/** The direction a DMA_BUF_IOCTL_SYNC access stands for (dma-buf.c dma_buf_ioctl). */
export function syncDirection(access: 'read' | 'write' | 'rw'): DmaDirection {
  return access === 'read' ? 'from-device' : access === 'write' ? 'to-device' : 'bidirectional';
}

export interface DirectionReport {
  kind: ViolationKind;
  /** debug.c's message, with its [mapped with] [synced with] tags. */
  message: string;
}

/** check_sync's direction checks, in debug.c's order. */
export function checkSync(mapped: DmaDirection, synced: DmaDirection, toCpu: boolean): DirectionReport[] {
  if (mapped === 'bidirectional') return [];
  const tags = `[mapped with ${DIR2NAME[mapped]}] [synced with ${DIR2NAME[synced]}]`;
  const out: DirectionReport[] = [];
  if (synced !== mapped) out.push({ kind: 'sync-different-direction', message: `device driver syncs DMA memory with different direction ${tags}` });
  if (toCpu && mapped !== 'from-device' && synced !== 'to-device') {
    out.push({ kind: 'sync-read-only-for-cpu', message: `device driver syncs device read-only DMA memory for cpu ${tags}` });
  }
  if (!toCpu && mapped !== 'to-device' && synced !== 'from-device') {
    out.push({ kind: 'sync-write-only-to-device', message: `device driver syncs device write-only DMA memory to device ${tags}` });
  }
  return out;
}

/** A device access the mapping's direction forbids, or null. */
export function checkDeviceAccess(mapped: DmaDirection, write: boolean): DirectionReport | null {
  if (write && mapped === 'to-device') {
    return { kind: 'device-write-to-read-only', message: `the device wrote device read-only DMA memory [mapped with ${DIR2NAME[mapped]}]` };
  }
  if (!write && mapped === 'from-device') {
    return { kind: 'device-read-of-write-only', message: `the device read device write-only DMA memory [mapped with ${DIR2NAME[mapped]}]` };
  }
  return null;
}
