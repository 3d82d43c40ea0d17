/*
 * bridge.h
 *		The HTTP bridge, as the module entry sees it: its start-up work.
 */
#ifndef EIGHTMS_BRIDGE_H
#define EIGHTMS_BRIDGE_H

/*
 * GUCs, shared memory and the worker's registration (these two only when
 * the library is preloaded).
 */
extern void eightms_bridge_init(void);

#endif							/* EIGHTMS_BRIDGE_H */
