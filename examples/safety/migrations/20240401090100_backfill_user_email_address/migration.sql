-- Release N, expand step 2: copy the existing values (the trigger covers new writes).
-- On a large table, backfill in batches from a job instead of one UPDATE.
UPDATE "User" SET "emailAddress" = "email" WHERE "emailAddress" IS NULL;
