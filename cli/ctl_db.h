/*
 * ctl_db: `platformctl db databases|collections|create|drop|get|put|
 * delete|find|count|watch`, the db-srv commands, as a group of the
 * command table (ctl_cmd.h). db-srv is --db ADDR (PLATFORM_DB), else
 * the service "db" found through discovery.
 *
 * Filters are written as JSON that mirrors platform.db.v1.Filter, with
 * values as JSON rather than JSON in a string:
 *
 *   {"path": "address.city", "op": "eq", "value": "Paris"}
 *   {"all": [F, ...]}   {"any": [F, ...]}   {"not": F}   {}
 *
 * (op: eq ne lt le gt ge in prefix exists contains, any case, with or
 * without OPERATOR_). find and count take a query holding one:
 * {"filter": F, "order": ["-age", "name"], "fields": [...], "limit": N}.
 */
#ifndef CTL_DB_H
#define CTL_DB_H

#include "ctl_cmd.h"

extern const struct ctl_group ctl_db_group;

#endif
