-- Release N, expand step 3: the unique index, built without blocking writes.
-- CONCURRENTLY cannot run in a transaction: the migrator runs this file statement by
-- statement, and drops an INVALID index a failed earlier try left behind.
CREATE UNIQUE INDEX CONCURRENTLY "User_emailAddress_key" ON "User"("emailAddress");
