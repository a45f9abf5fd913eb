-- Release N, expand step 5: check the existing rows in a transaction of its own, under a
-- SHARE UPDATE EXCLUSIVE lock that does not block reads or writes.
ALTER TABLE "User" VALIDATE CONSTRAINT "User_emailAddress_not_null";
