// The world's output format version: bump it when a file's layout or meaning changes.
export const WORLD_VERSION = "2"; // 2: the layout caption first; jigsaw pieces shown in place
