-- Release N, expand step 1 of the rename User.email -> User.emailAddress.
-- The new column is nullable, so old pods (which only know "email") can still insert.
ALTER TABLE "User" ADD COLUMN "emailAddress" TEXT;

-- Until the contract step, keep both columns in sync whichever release writes.
CREATE FUNCTION "User_sync_email"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW."emailAddress" IS NULL THEN
        NEW."emailAddress" := NEW."email";
    ELSIF NEW."email" IS NULL OR NEW."email" IS DISTINCT FROM NEW."emailAddress" THEN
        NEW."email" := NEW."emailAddress";
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER "User_sync_email" BEFORE INSERT OR UPDATE ON "User"
    FOR EACH ROW EXECUTE FUNCTION "User_sync_email"();
