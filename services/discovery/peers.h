/*
 * peers: discovery-srv replicas keeping each other's registrations
 * (--peers a,b: the other replicas).
 *
 * Registrations are soft state, replicated Eureka-style (available over
 * consistent): every Register (each heartbeat is one) and Deregister a
 * client sends to one replica is copied to every peer, in order, by a
 * thread per peer with a bounded queue, marked PEERS_MD so the peer does
 * not copy it on. Each replica expires nodes on its own clock from the
 * heartbeats it sees. A replica that starts first fills itself from the
 * first peer that answers (every node with its remaining time to live).
 * Clients given every replica (--discovery a,b,c) use whichever answers.
 */
#ifndef DISCOVERY_PEERS_H
#define DISCOVERY_PEERS_H

#include "platform/discovery/v1/discovery.pb-c.h"
#include "platform/server.h"

#define PEERS_MD "x-discovery-peer"

/* Fills the registry through apply, then starts copying: 0, or -1. */
int peers_start(plat_server *srv, const char *list,
    void (*apply)(const Platform__Discovery__V1__RegisterRequest *req));
/* Sends what is queued for up to flush_ms, then stops. */
void peers_stop(int flush_ms);

void peers_forward_register(
    const Platform__Discovery__V1__RegisterRequest *req);
void peers_forward_deregister(
    const Platform__Discovery__V1__DeregisterRequest *req);

#endif
