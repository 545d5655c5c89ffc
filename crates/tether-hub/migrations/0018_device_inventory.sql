-- What a Tether agent reports of its device (the control `inventory` of the device leg, see
-- docs/protocol.md): `inventory` is its JSON (tether_proto::inventory::Inventory), `inventory_at`
-- when it arrived (Unix ms). `os_name` and `architecture` repeat two of its fields, lower-cased,
-- so that the device list filters on them in SQL. All NULL for a device that never reported one
-- (a stock mender-connect).

ALTER TABLE devices ADD COLUMN inventory TEXT;
ALTER TABLE devices ADD COLUMN inventory_at BIGINT;
ALTER TABLE devices ADD COLUMN os_name TEXT;
ALTER TABLE devices ADD COLUMN architecture TEXT;
