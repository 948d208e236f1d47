// stackbpf's eBPF runtime: a TypeScript library over the system libbpf.
// It knows nothing of OpenStack; the domain modules build on it.
export * from './errors.js';
export * from './codec.js';
export * from './constants.js';
export { Btf, BtfKind, type BtfStruct, type BtfMember, type BtfVariable } from './btf.js';
export { generateAbi, type AbiSpec } from './abigen.js';
export { BpfObject, type OpenOptions, type ObjectState } from './object.js';
export { BpfMap, createMap, mapInfoByFd, numPossibleCpus, perCpuCodec, sumPerCpu, type MapInfo } from './map.js';
export { MapMemory, MAP_F_MMAPABLE } from './memory.js';
export {
  Program,
  TEST_RUN_XDP_LIVE_FRAMES,
  enableStats,
  programInfoByFd,
  queryXdpMode,
  type ProgramInfo,
  type ProgramStats,
  type TcAttachOptions,
  type TestRunOptions,
  type TestRunResult,
  type UprobeOptions,
  type XdpAttachOptions,
  type XdpMode,
} from './program.js';
export { Link, TcFilter, linkInfoByFd, type Attachment, type LinkInfo, type LinkKind } from './link.js';
export { RingBuffer, type RecordHandler, type RingBufferOptions, type RingBufferStats } from './ringbuf.js';
export { DEFAULT_PIN_ROOT, KERNEL_FS, ensureMounted, ensurePinDir, isMounted, mountPointOf, type KernelFsName, type MountResult } from './fs.js';
export { withNetns, ifindexOf, macOf, mtuOf, netnsCookie, netnsDevices, netnsPath, type NetnsDevices } from './netns.js';
export { probeFeatures, requireHook, summarize, capabilities, cgroup2Path, type FeatureReport, type HookName, type Probe } from './features.js';
export { setLibbpfSink, type LibbpfLevel } from './libbpf-log.js';
